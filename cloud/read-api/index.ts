export { registerReadRoutes, recordToJson, type ReadApiOptions } from './read-routes.js';
export { registerSummaryRoutes, summarizeTopic, type SummaryRoutesOptions, type TopicListing, type TopicSummary } from './summary-routes.js';
