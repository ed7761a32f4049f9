import { defineConfig } from 'vitest/config';
import LongestFirst from './test/support/longest-first.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Integration tests start real processes and brokers; two cores do not run many at once well.
    fileParallelism: true,
    maxWorkers: 2,
    // The few files that take minutes start first, beside the short ones.
    sequence: { sequencer: LongestFirst },
  },
});
