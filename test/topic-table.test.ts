/**
 * The log's topic table (edge/log/topic-table.ts) against a Map: every name finds its own
 * topic and no other, through growth, colliding hashes and removals.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TopicTable } from '../edge/log/topic-table.js';

interface Topic {
  readonly name: string;
  readonly id: number;
}

describe('TopicTable', () => {
  it('agrees with a Map over random adds, lookups and removals', () => {
    const names = fc.oneof(
      fc.string({ maxLength: 6 }),
      fc.string({ unit: 'grapheme', maxLength: 4 }),
      fc.integer({ min: 0, max: 3000 }).map((n) => `C${String(n).padStart(6, '0')}`),
    );
    const command = fc.oneof(
      fc.record({ kind: fc.constant('add' as const), names: fc.array(names, { maxLength: 400 }) }),
      fc.record({ kind: fc.constant('get' as const), names: fc.array(names, { maxLength: 50 }) }),
      fc.record({ kind: fc.constant('remove' as const), every: fc.integer({ min: 1, max: 5 }) }),
    );
    fc.assert(
      fc.property(fc.array(command, { maxLength: 30 }), (commands) => {
        const table = new TopicTable<Topic>();
        const model = new Map<string, Topic>();
        let nextId = 1;
        const check = (name: string) => expect(table.get(name)).toBe(model.get(name));
        for (const step of commands) {
          if (step.kind === 'add') {
            for (const name of step.names) {
              if (model.has(name)) continue;
              const topic = { name, id: nextId++ };
              table.add(topic);
              model.set(name, topic);
            }
          } else if (step.kind === 'get') {
            for (const name of step.names) check(name);
          } else {
            const removed = new Set([...model.values()].filter((topic) => topic.id % step.every === 0));
            table.remove(removed);
            for (const topic of removed) model.delete(topic.name);
          }
          expect(table.size).toBe(model.size);
          expect(new Set(table.values())).toEqual(new Set(model.values()));
        }
        for (const name of model.keys()) check(name);
      }),
      { numRuns: 200 },
    );
  });

  it('finds each of 100,000 topics, through slot collisions and seven growths', () => {
    const table = new TopicTable<Topic>();
    const topics = Array.from({ length: 100_000 }, (_u, id) => ({ name: `C${String(id).padStart(6, '0')}`, id }));
    for (const topic of topics) table.add(topic);
    for (const topic of topics) expect(table.get(topic.name)).toBe(topic);
    expect(table.get('C100000')).toBeUndefined();
    expect(table.get('')).toBeUndefined();
  });
});
