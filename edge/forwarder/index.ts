export {
  Forwarder,
  forwardCursorName,
  type BatchPosition,
  type BatchSender,
  type ForwarderOptions,
  type ForwarderStats,
  type SendOptions,
  type SendReport,
  type StreamBacklog,
} from './forwarder.js';
export {
  LinkPolicy,
  LINK_STATES,
  parseSwitch,
  windowContains,
  type LinkCondition,
  type LinkOverride,
  type LinkPolicyOptions,
  type LinkState,
  type ScheduleWindow,
} from './link-policy.js';
export { RetryPolicy, failureReason, type RetryDecision, type RetryPolicyOptions } from './retry-policy.js';
export { registerLinkRoutes, type LinkControl } from './link-routes.js';
export { topicMatcher } from './topic-filter.js';
export { DispatchTurns } from './dispatch-turns.js';
export { findResumePoint, type ResumePoint, type ResumePointOptions } from './resume-point.js';
