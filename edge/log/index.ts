export {
  SqliteLog,
  indexPathFor,
  type SqliteLogOptions,
  type StreamPolicy,
  type TopicStats,
  type RetentionReport,
} from './sqlite-log.js';
export { verifyLog, type VerifyReport } from './verify.js';
