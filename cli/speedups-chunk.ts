/**
 * An entry of the bundle (tools/bundle) that nothing runs: it exists so that the speedups
 * replacing internals of kafkajs and mqtt-packet through Node's module cache
 * (cloud/kafka-log/kafkajs-speedups.ts, edge/gateway/mqtt-packet-speedups.ts) get chunks of
 * their own. They take effect only if they run before anything loads those packages.
 *
 * In tsc's tree the modules that use the packages import their speedups first, and ES module
 * evaluation order does the rest. A bundle merges modules into chunks, and a chunk's imports
 * (of a package kept out of the bundle, and of other chunks) are all evaluated before any of
 * its code: a chunk holding both a speedups module and a module that imports kafkajs loads
 * kafkajs first, and the speedups stand aside (seen: grouping and framing 'too-late'). esbuild
 * puts in one chunk the modules reached from the same set of entries; this entry reaches the
 * speedups and nothing else, so their chunks hold nothing but them, and every chunk that
 * needs them imports them ahead of the packages, in the modules' own import order.
 *
 * Why not run this first in every process: it would load kafkajs (about 90 files) into every
 * site, SQLite ones included, which load it only if their log is on Kafka.
 */
import '../cloud/kafka-log/kafkajs-speedups.js';
import '../edge/gateway/mqtt-packet-speedups.js';
