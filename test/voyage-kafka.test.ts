/**
 * The voyage with its shore sites on Apache Kafka (`portcall demo --kafka`): TOKYO and HQ put
 * their logs on the shared test broker (`log: kafka`, each its own topic prefix); SINGAPORE and
 * SYDNEY, which run the terminals' MQTT gateways, stay on the embedded log (a Kafka-backed site
 * runs no gateway yet). Without the scenario's faults and faster than test/voyage.test.ts (that
 * one checks the kill -9 and the drops), so it is the Kafka logs under the same seven steps.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeKafka, kafkaBootstrap } from './support/kafka.js';
import { kill9WithChildren, startPortcall, type PortcallProcess } from './support/portcall-process.js';
import { siteLogProblems } from './support/site-logs.js';

describeKafka('the voyage on Kafka (portcall demo --kafka)', () => {
  let demo: PortcallProcess;
  let output = '';
  let exitCode: number | null = null;

  beforeAll(async () => {
    demo = startPortcall(['demo', '--kafka', '--kafka-bootstrap', kafkaBootstrap()!, '--acceleration', '30000', '--no-faults', '--exit']);
    try {
      // 195-294 s alone on a 2-core machine; beside the rest of the suite on a slower one it
      // had reached Sydney, its last port, at 400 s (twice, 2026-11-22): a bound for a hang,
      // not for speed.
      await demo.waitFor(/: the voyage (tells its story|did not hold)/, 600_000);
      exitCode = demo.child.exitCode ?? (await new Promise<number | null>((resolve) => demo.child.once('exit', (code) => resolve(code))));
    } finally {
      output = demo.output();
      process.stderr.write(`[voyage --kafka] ${/sites up in [^\n]*/.exec(output)?.[0] ?? 'no start-up time printed'}; ${/wall time: [^\n]*/.exec(output)?.[0] ?? 'no wall time printed'}\n`);
      if (!/OK: the voyage tells its story/.test(output)) {
        process.stderr.write(output.split('\n').filter((line) => !line.startsWith('day ')).join('\n').slice(-6000));
        // The last status lines say where it stood; the sites' own warnings say why.
        process.stderr.write(`\n${output.split('\n').filter((line) => line.startsWith('day ')).slice(-5).join('\n')}\n${siteLogProblems(output)}\n`);
      }
    }
  }, 620_000);

  afterAll(async () => {
    // A demo that failed half-way must not leave its five sites running.
    await kill9WithChildren(demo);
  });

  it('TOKYO and HQ on Kafka: every step of the voyage holds, every shore site agrees, and the demo exits 0', () => {
    expect(output).toMatch(/voyage: TOKYO and HQ on Apache Kafka at \S+ \(log: kafka\)/);
    const steps = output.split('\n').filter((line) => /\[step \d\] /.test(line));
    expect(steps.length, output.slice(-4000)).toBeGreaterThanOrEqual(30);
    for (const line of steps) expect(line).toMatch(/\[step \d\] ok /);
    for (const n of [1, 2, 3, 4, 5, 6, 7]) expect(steps.some((line) => line.includes(`[step ${n}] ok `)), `step ${n}`).toBe(true);
    expect(output).toMatch(/all 4 shore sites hold identical records at identical offsets/);
    expect(output).toMatch(/retention on the ship never removed what was not yet forwarded/);
    expect(output).toMatch(/OK: the voyage tells its story/);
    expect(exitCode).toBe(0);
  });
});
