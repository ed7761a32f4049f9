/**
 * The customer container-tracking portal (issue 9; DESIGN.md "Who uses it", decision 8).
 *
 * Design note.
 * - Read model (read-model.ts): a fold of the site's `containers`, `ships`, `manifests` and
 *   `alerts` streams into what the pages show: latest readings per container and ship, a
 *   downsampled series per container (charts over the whole history) and per ship (tracks),
 *   each container's manifests (its timeline) and the alerts. It keeps records, or numbers
 *   that name records (a series point is an offset, an event time and a position; its record
 *   is read back from the site's log when a page needs it), never numbers merged across
 *   records, so every answer is passed record by record through the audience's RecordFilter:
 *   the access policy decides on the real record, in the form it admits (full, consignee
 *   status, port movement). The portal never evaluates a rule itself.
 * - Idempotent and version-guarded: every selection is a min/max over (event time, offset)
 *   within a topic and every list is keyed by identity, so the state depends only on the set
 *   of records applied; replaying from zero gives the same state, and a late or repeated
 *   record never rolls anything back (tested: replay twice, shuffled duplicated deliveries).
 * - Rebuilt at start, not persisted: the log is the only source of truth, and a persisted
 *   copy would need its own version guard against a log restored or rebuilt underneath it.
 *   Memory is bounded per topic (16 whole records and at most maxBuckets buckets of numbers
 *   per container or ship), so it grows with the number of containers, not with their
 *   history. When start-up replay becomes too slow (tens of millions of records), persist the
 *   model with the stream positions it reflects.
 * - Reads through the contracts only: StreamSource (readStream from position 0, then
 *   onDurable and a 1 s poll for records replicated in) to fold, TopicReader (readTopic) to
 *   read a series' records back. Both logs implement both.
 * - Live: the projector calls listeners with each batch it folds in; the SSE route passes
 *   every record through the connection's RecordFilter (re-authenticated on every burst).
 * - Denials: a caller without an audience, and a container the caller may not see, answer
 *   exactly as a container that does not exist (404).
 */
export { PortalReadModel, PortalRecordsUnavailableError, Series, bodyOf, newer, BASE_BUCKET_MS, DEFAULT_CACHE_RECORDS, DEFAULT_MAX_BUCKETS, RECENT, type ContainerModel, type ShipModel, type ReadModelOptions, type SeriesPoint } from './read-model.js';
export { PortalProjector, PORTAL_STREAMS, type PortalProjectorOptions, type LiveListener } from './projector.js';
export { FLEET_TRACK_POINTS, containerView, containerList, fleetView, alertsView, movementsView, liveEventOf } from './views.js';
export { registerPortalRoutes, type PortalAudience, type PortalRoutesOptions } from './routes.js';
