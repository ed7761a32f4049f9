/**
 * Test files in an order that keeps both workers busy to the end: the few files that take
 * minutes (they start real processes and kill them dozens of times) go first, so they run
 * beside the many short ones instead of starting last and running alone. Otherwise vitest's
 * own order (its duration cache, then file size).
 */
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/** The long ones, longest first (seconds on a quiet two-core machine, roughly). */
const LONG_FILES = [
  // The three runs of several real sites each (the voyage, the voyage on Kafka, the chaos run)
  // go one after another on one worker, with what takes about as long on the other between
  // them: side by side on two cores each slows the other to its limits (the voyage's ship once
  // sailed from Singapore before its handoff records had reached the port).
  'test/voyage.test.ts', // ~170-280
  // The bridge test kills the gateway mid-delivery; early, away from the chaos run.
  'test/gateway-bridge.test.ts', // ~20
  'test/uplink.test.ts', // ~100-320
  'test/kafka-shore-crash.test.ts', // ~45-150
  'test/log-crash.test.ts', // ~45-115
  'test/voyage-kafka.test.ts', // ~195-250
  'test/kafka-customer-topics.test.ts', // ~120, its own second broker
  'test/replication-customer.test.ts', // ~60
  'test/chaos.test.ts', // ~120-190
  'test/kafka-forward.test.ts', // ~120
  'test/thin-path.test.ts',
  'test/fleet-emulator.test.ts',
  'test/uplink-policy.test.ts',
  'test/kafka-log.test.ts',
  'test/replication.test.ts',
];

function rank(file: TestSpecification): number {
  const index = LONG_FILES.findIndex((name) => file.moduleId.endsWith(name));
  return index === -1 ? LONG_FILES.length : index;
}

export default class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    return [...sorted].sort((left, right) => rank(left) - rank(right));
  }
}
