export {
  registerIngestRoutes,
  DEFAULT_INGEST_LIMITS,
  type IngestLimits,
  type IngestOptions,
  type IngestStats,
} from './ingest-routes.js';
export { registerHoldingsRoute, type HoldingsRouteOptions } from './holdings-route.js';
