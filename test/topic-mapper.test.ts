import { describe, expect, it } from 'vitest';
import { ConfigError } from '../core/index.js';
import { TopicMapper } from '../edge/gateway/index.js';
import { DEFAULT_TOPIC_RULES } from '../site/index.js';

describe('TopicMapper', () => {
  const mapper = new TopicMapper(DEFAULT_TOPIC_RULES);

  it('maps container and ship topics to their stream and log topic', () => {
    expect(mapper.map('bigblue/containers/Y07/reefer')).toEqual({
      stream: 'containers',
      topic: 'Y07',
      variables: { container: 'Y07', sensor: 'reefer' },
    });
    expect(mapper.map('bigblue/ships/AURORA/position')?.stream).toBe('ships');
  });

  it('does not match other depths, other prefixes or empty levels', () => {
    expect(mapper.map('bigblue/containers/Y07')).toBeUndefined();
    expect(mapper.map('bigblue/containers/Y07/reefer/extra')).toBeUndefined();
    expect(mapper.map('redco/containers/R01/reefer')).toBeUndefined();
    expect(mapper.map('bigblue/containers//reefer')).toBeUndefined();
  });

  it('refuses rules that use undefined placeholders or wildcards', () => {
    expect(() => new TopicMapper([{ pattern: 'a/{x}', stream: 's', topic: '{y}' }])).toThrow(ConfigError);
    expect(() => new TopicMapper([{ pattern: 'a/+/b', stream: 's', topic: 't' }])).toThrow(/topicRules\[0\]\.pattern/);
  });
});
