/**
 * Ports for processes started later come from below the kernel's range for outgoing
 * connections' source ports, so no connection on the machine can be given one before the
 * process binds it; and one process never hands the same port out twice.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { expect, it } from 'vitest';
import { freeLoopbackPort } from '../tools/net/index.js';

it('hands out distinct, bindable ports below the ephemeral range', async () => {
  const [ephemeralLow] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  const ports: number[] = [];
  for (let i = 0; i < 200; i += 1) ports.push(await freeLoopbackPort());
  expect(new Set(ports).size).toBe(ports.length);
  for (const port of ports) {
    expect(port).toBeGreaterThanOrEqual(10_000);
    expect(port).toBeLessThan(ephemeralLow!);
  }
  // Each is bindable right away (spot-check a few).
  for (const port of ports.slice(0, 5)) {
    await new Promise<void>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => server.close(() => resolve()));
    });
  }
});
