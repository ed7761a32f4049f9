export { SeaLanes, SeaRoute, NoSeaRouteError, distanceNm, bearingDeg, interpolate, type GeoPoint, type RoutePosition } from './sea-lanes.js';
export { PORTS, portByCode, UnknownPortError, type Port } from './ports.js';
