/**
 * Test files in an order that keeps both workers busy to the end: the few files that take
 * minutes (they start real processes and kill them dozens of times) go first, so they run
 * beside the many short ones instead of starting last and running alone. Otherwise vitest's
 * own order (its duration cache, then file size).
 */
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/** The long ones, longest first (seconds on a quiet two-core machine, roughly). */
const LONG_FILES = [
  // The voyage and the chaos run must not overlap: each runs five real sites (and chaos a
  // Kafka broker) on the two cores, and side by side the voyage's ship sailed from Singapore
  // before its backlog (a handoff record among it) had reached the port, twice in CI. With two
  // workers, what comes between them takes about as long as the voyage.
  'test/voyage.test.ts', // ~210-330
  // The bridge test bounds redeliveries after a kill -9 (never a replay of the batch); it failed
  // that bound twice in CI while the chaos run shared the cores: it goes early, before chaos.
  'test/gateway-bridge.test.ts',
  'test/uplink.test.ts', // ~100-190
  'test/kafka-shore-crash.test.ts', // ~45-150
  'test/log-crash.test.ts', // ~45-115
  'test/chaos.test.ts', // ~130-190
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
