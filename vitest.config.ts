import { defineConfig } from 'vitest/config';
import LongestFirst from './test/support/longest-first.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Integration tests start real processes and brokers and spend much of their time waiting on
    // them (restarts, links, timeouts): three files at once kept the two cores busier (two left
    // about 15% of them idle in CI) without starving any.
    fileParallelism: true,
    maxWorkers: 3,
    // The few files that take minutes start first, beside the short ones.
    sequence: { sequencer: LongestFirst },
  },
});
