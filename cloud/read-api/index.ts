export { registerReadRoutes, recordToJson, type ReadApiOptions } from './read-routes.js';
