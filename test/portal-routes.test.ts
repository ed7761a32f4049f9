/**
 * The portal's routes when the log cannot answer: a container's page reads its history back
 * from the log (the read model keeps a series as numbers), so a log that cannot be read right
 * now (a Kafka log whose topic index is catching up) answers 503 with Retry-After, like the
 * read API, and a list that needs only the records held whole still answers.
 */
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { StoreUnavailableError, type LogRecord, type RecordFilter } from '../core/index.js';
import { PortalProjector, PortalReadModel, registerPortalRoutes, type PortalAudience } from '../cloud/portal/index.js';

const everything: RecordFilter = { mayHold: () => true, admit: (record) => record };
const audience: PortalAudience = { principal: 'ops', org: 'bigblue', orgKind: 'carrier', roles: ['carrier-ops'], filter: everything, operations: true };

describe('portal routes', () => {
  it('answer 503 with Retry-After when the log cannot be read now, and keep serving what needs no read', async () => {
    let reads = 0;
    const model = new PortalReadModel({
      reader: {
        readTopic: async () => {
          reads += 1;
          throw new StoreUnavailableError('the topic index is catching up');
        },
      },
    });
    const startMs = Date.parse('2026-03-02T00:00:00Z');
    for (let offset = 0; offset < 100; offset += 1) {
      const eventTimeMs = startMs + offset * 600_000;
      const record: LogRecord = { origin: 'AURORA', stream: 'containers', topic: 'Y01', offset, eventTimeMs, ingestTimeMs: eventTimeMs, headers: {}, payload: Buffer.from(JSON.stringify({ tempC: 4, lat: 1, lon: 2 })) };
      model.apply(record);
    }
    const projector = new PortalProjector({ source: { readStream: async (_stream, after) => ({ records: [], nextPosition: after }), onDurable: () => () => undefined }, model });
    const app = Fastify();
    registerPortalRoutes(app, { projector, authenticate: () => audience, operations: () => ({}) });
    try {
      const page = await app.inject({ url: '/portal/api/containers/Y01', headers: { authorization: 'Bearer x' } });
      expect(page.statusCode).toBe(503);
      expect(page.headers['retry-after']).toBe('1');
      expect(page.json()).toEqual({ code: 'STORE_UNAVAILABLE', message: 'the topic index is catching up' });
      expect(reads).toBeGreaterThan(0);
      // The list shows each container's latest reading, held whole: no read of the log.
      reads = 0;
      const list = await app.inject({ url: '/portal/api/containers', headers: { authorization: 'Bearer x' } });
      expect(list.statusCode).toBe(200);
      expect((list.json() as { containers: { id: string; latest: { offset: number } }[] }).containers).toMatchObject([{ id: 'Y01', latest: { offset: 99 } }]);
      expect(reads).toBe(0);
    } finally {
      await app.close();
      projector.stop();
    }
  });
});
