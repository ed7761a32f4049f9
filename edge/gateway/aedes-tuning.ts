/**
 * After the PUBACK, aedes looks every PUBLISH's topic up twice: in its persistence's trie of
 * QoS 1/2 subscriptions (for offline sessions) and in mqemitter's trie of live ones. On a
 * gateway nearly every topic has no subscriber at all, and the answer only changes when a
 * subscription does. Both look-ups are therefore remembered for topics that matched nothing,
 * and forgotten whenever either trie changes (every change goes through the wrapped methods).
 * A topic with any subscriber is looked up as before, every time.
 *
 * Only aedes' own in-memory persistence and mqemitter are tuned; anything else is left as is.
 */
import type { Aedes } from 'aedes';

/** Unmatched topics remembered at most, per trie (a client cycling through topics must not grow it without end). */
const MAX_REMEMBERED = 100_000;

type Method = (...args: never[]) => unknown;

/** Wraps `target[name]` so every call first runs `before`. */
function onCall(target: Record<string, unknown>, name: string, before: () => void): boolean {
  const original = target[name];
  if (typeof original !== 'function') return false;
  const bound = (original as Method).bind(target) as (...args: unknown[]) => unknown;
  target[name] = (...args: unknown[]) => {
    before();
    return bound(...args);
  };
  return true;
}

class UnmatchedTopics {
  private readonly topics = new Set<string>();
  /** Counts changes of the trie, so an answer computed before one is not remembered after it. */
  generation = 0;

  has(topic: string): boolean {
    return this.topics.has(topic);
  }

  add(topic: string): void {
    if (this.topics.size >= MAX_REMEMBERED) this.topics.clear();
    this.topics.add(topic);
  }

  forget = (): void => {
    this.generation += 1;
    this.topics.clear();
  };
}

/** Remembers, for each trie aedes uses, the topics that matched nothing until a subscription changes. */
export function rememberUnmatchedTopics(broker: Aedes): void {
  const internals = broker as unknown as {
    mq?: { _matcher?: Record<string, unknown> };
    persistence?: { asyncPersistence?: Record<string, unknown> };
  };

  const matcher = internals.mq?._matcher;
  if (matcher !== undefined && typeof matcher.match === 'function') {
    const unmatched = new UnmatchedTopics();
    const wrapped = ['add', 'remove', 'clear'].map((name) => onCall(matcher, name, unmatched.forget));
    if (wrapped[0] === true && wrapped[1] === true) {
      const match = (matcher.match as Method).bind(matcher) as (topic: string, ...rest: unknown[]) => unknown[];
      matcher.match = (topic: string, ...rest: unknown[]) => {
        if (rest.length === 0 && unmatched.has(topic)) return [];
        const found = match(topic, ...rest);
        if (rest.length === 0 && found.length === 0) unmatched.add(topic);
        return found;
      };
    }
  }

  const store = internals.persistence?.asyncPersistence;
  if (store !== undefined && typeof store.subscriptionsByTopic === 'function') {
    const unmatched = new UnmatchedTopics();
    const wrapped = ['addSubscriptions', 'removeSubscriptions', 'cleanSubscriptions'].map((name) => onCall(store, name, unmatched.forget));
    if (wrapped.every(Boolean)) {
      const byTopic = (store.subscriptionsByTopic as Method).bind(store) as (topic: string) => Promise<unknown[]>;
      store.subscriptionsByTopic = (topic: string) => {
        if (unmatched.has(topic)) return Promise.resolve([]);
        const found = byTopic(topic);
        // Asked before the answer arrives: a subscription added meanwhile forgets it again.
        const asked = unmatched.generation;
        return found.then((subscriptions) => {
          if (subscriptions.length === 0 && asked === unmatched.generation) unmatched.add(topic);
          return subscriptions;
        });
      };
    }
  }
}
