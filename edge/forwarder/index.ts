export { Forwarder, type BatchSender, type ForwarderOptions, type ForwarderStats } from './forwarder.js';
