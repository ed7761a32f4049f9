export { Forwarder, forwardCursorName, type BatchSender, type ForwarderOptions, type ForwarderStats } from './forwarder.js';
