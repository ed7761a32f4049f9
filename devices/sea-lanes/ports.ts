/**
 * Real container ports, by UN/LOCODE, with a position in the port's waters (a ship's
 * position when berthed or at anchor off the terminal). Coordinates from public charts,
 * to about a kilometre; enough to route between ports and to tell "in port" from "at sea".
 */
import type { GeoPoint } from './sea-lanes.js';

export interface Port extends GeoPoint {
  /** UN/LOCODE, e.g. JPTYO. */
  readonly code: string;
  readonly name: string;
  /** IANA time zone, for local times in manifests and the portal. */
  readonly timeZone: string;
}

const PORT_LIST: readonly Port[] = [
  { code: 'JPTYO', name: 'Tokyo', lat: 35.6, lon: 139.79, timeZone: 'Asia/Tokyo' },
  { code: 'JPYOK', name: 'Yokohama', lat: 35.45, lon: 139.68, timeZone: 'Asia/Tokyo' },
  { code: 'KRPUS', name: 'Busan', lat: 35.08, lon: 129.07, timeZone: 'Asia/Seoul' },
  { code: 'CNSHA', name: 'Shanghai', lat: 30.62, lon: 122.07, timeZone: 'Asia/Shanghai' },
  { code: 'HKHKG', name: 'Hong Kong', lat: 22.31, lon: 114.12, timeZone: 'Asia/Hong_Kong' },
  { code: 'TWKHH', name: 'Kaohsiung', lat: 22.56, lon: 120.29, timeZone: 'Asia/Taipei' },
  { code: 'SGSIN', name: 'Singapore', lat: 1.26, lon: 103.82, timeZone: 'Asia/Singapore' },
  { code: 'MYPKG', name: 'Port Klang', lat: 2.99, lon: 101.36, timeZone: 'Asia/Kuala_Lumpur' },
  { code: 'AUSYD', name: 'Sydney', lat: -33.97, lon: 151.22, timeZone: 'Australia/Sydney' },
  { code: 'AUMEL', name: 'Melbourne', lat: -37.84, lon: 144.91, timeZone: 'Australia/Melbourne' },
  { code: 'NZAKL', name: 'Auckland', lat: -36.84, lon: 174.78, timeZone: 'Pacific/Auckland' },
  { code: 'USLAX', name: 'Los Angeles', lat: 33.73, lon: -118.26, timeZone: 'America/Los_Angeles' },
  { code: 'USLGB', name: 'Long Beach', lat: 33.75, lon: -118.21, timeZone: 'America/Los_Angeles' },
  { code: 'AEJEA', name: 'Jebel Ali', lat: 25.01, lon: 55.06, timeZone: 'Asia/Dubai' },
  { code: 'NLRTM', name: 'Rotterdam', lat: 51.95, lon: 4.05, timeZone: 'Europe/Amsterdam' },
  { code: 'DEHAM', name: 'Hamburg', lat: 53.54, lon: 9.94, timeZone: 'Europe/Berlin' },
];

export const PORTS: ReadonlyMap<string, Port> = new Map(PORT_LIST.map((port) => [port.code, port]));

export class UnknownPortError extends Error {
  readonly code = 'UNKNOWN_PORT';
  constructor(code: string) {
    super(`unknown port ${JSON.stringify(code)}; known: ${[...PORTS.keys()].join(', ')}`);
  }
}

/** A port by UN/LOCODE or by name (case-insensitive). */
export function portByCode(codeOrName: string): Port {
  const wanted = codeOrName.trim().toUpperCase();
  const port = PORTS.get(wanted) ?? PORT_LIST.find((candidate) => candidate.name.toUpperCase() === wanted);
  if (port === undefined) throw new UnknownPortError(codeOrName);
  return port;
}
