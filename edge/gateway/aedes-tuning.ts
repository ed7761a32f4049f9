/**
 * After the PUBACK, aedes looks every PUBLISH's topic up twice: in its persistence's trie of
 * QoS 1/2 subscriptions (for offline sessions) and in mqemitter's trie of live ones. On a
 * gateway nearly every topic has no subscriber at all, and the answer only changes when a
 * subscription does. Both look-ups are therefore remembered for topics that matched nothing,
 * and forgotten whenever either trie changes (every change goes through the wrapped methods).
 * A topic with any subscriber is looked up as before, every time.
 *
 * Only aedes' own in-memory persistence and mqemitter are tuned; anything else is left as is.
 *
 * Once both remember a topic as unmatched (the live one alone, for QoS 0, which is never
 * queued for offline sessions), a PUBLISH to it skips aedes' publish pipeline
 * altogether (its packet copy, the offline enqueuer and its two promises, the emitter and
 * their closures: about 1.2 KB and a share of the gateway thread's time per message, for an
 * outcome known in advance: nobody to deliver to). Only when nothing else could see the
 * difference: the packet is not retained (a retained one must be stored), and aedes has its
 * default `published` hook and no 'publish' listener. It completes a microtask later, as the
 * pipeline's promises made it.
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

  let live: UnmatchedTopics | undefined;
  let offline: UnmatchedTopics | undefined;
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
      live = unmatched;
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
      offline = unmatched;
    }
  }
  if (live !== undefined && offline !== undefined) skipPipelineWhenUnmatched(broker, live, offline);
}

type PublishDone = (error?: Error | null) => void;

/** The short cut described at the top, for topics both tries remember as unmatched. */
function skipPipelineWhenUnmatched(broker: Aedes, live: UnmatchedTopics, offline: UnmatchedTopics): void {
  const internals = broker as unknown as {
    publish: (packet: { topic: string; qos?: number; retain?: boolean }, client?: unknown, done?: PublishDone) => void;
    published?: { name?: string };
  };
  const publish = internals.publish.bind(broker);
  let skipped = 0;
  internals.publish = (packet, client, done) => {
    if (
      typeof client !== 'function' &&
      packet.retain !== true &&
      live.has(packet.topic) &&
      // QoS 0 is never queued for offline sessions: only the live answer matters.
      ((packet.qos ?? 0) === 0 || offline.has(packet.topic)) &&
      internals.published?.name === 'defaultPublished' &&
      broker.listenerCount('publish') === 0
    ) {
      skipped += 1;
      if (done !== undefined) queueMicrotask(() => done(null));
      return;
    }
    publish(packet, client, done);
  };
  Object.defineProperty(broker, 'portcallPublishesSkipped', { get: () => skipped, configurable: true });
}

/** How many publishes skipped aedes' pipeline (tests check the short cut is taken). */
export function publishesSkipped(broker: Aedes): number {
  return (broker as unknown as { portcallPublishesSkipped?: number }).portcallPublishesSkipped ?? 0;
}
