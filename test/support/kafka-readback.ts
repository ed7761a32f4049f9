/** The read_committed read-back lives in tools/kafka (the chaos run uses it too). */
export { header, readBackCommitted, type ReadMessage } from '../../tools/kafka/readback.js';
