/**
 * Maps MQTT topics to (stream, topic) by configured rules such as
 *   pattern `bigblue/containers/{container}/{sensor}` → stream `containers`, topic `{container}`.
 * A `{name}` placeholder matches exactly one non-empty topic level. Rules are tried in order.
 */
import { ConfigError } from '../../core/index.js';

export interface TopicRule {
  readonly pattern: string;
  readonly stream: string;
  /** Template of the log topic, using the pattern's placeholders. */
  readonly topic: string;
}

export interface MappedTopic {
  readonly stream: string;
  readonly topic: string;
  readonly variables: Readonly<Record<string, string>>;
}

interface CompiledRule {
  readonly levels: readonly ({ literal: string } | { variable: string })[];
  readonly stream: string;
  readonly topicTemplate: readonly ({ literal: string } | { variable: string })[];
}

const MAX_CACHED_TOPICS = 200_000;
const PLACEHOLDER = /^\{([A-Za-z][A-Za-z0-9_]*)\}$/;

function parseTemplate(template: string): ({ literal: string } | { variable: string })[] {
  const parts: ({ literal: string } | { variable: string })[] = [];
  const pattern = /\{([A-Za-z][A-Za-z0-9_]*)\}/g;
  let last = 0;
  for (const match of template.matchAll(pattern)) {
    if (match.index > last) parts.push({ literal: template.slice(last, match.index) });
    parts.push({ variable: match[1] as string });
    last = match.index + match[0].length;
  }
  if (last < template.length) parts.push({ literal: template.slice(last) });
  return parts;
}

export class TopicMapper {
  private readonly rules: CompiledRule[];

  constructor(rules: readonly TopicRule[]) {
    this.rules = rules.map((rule, index) => {
      const levels = rule.pattern.split('/').map((level) => {
        const match = PLACEHOLDER.exec(level);
        if (match) return { variable: match[1] as string };
        if (level.includes('{') || level.includes('+') || level.includes('#')) {
          throw new ConfigError(
            `topicRules[${index}].pattern: level "${level}" must be a literal or a whole {placeholder}`,
          );
        }
        return { literal: level };
      });
      const names = new Set(levels.flatMap((level) => ('variable' in level ? [level.variable] : [])));
      const topicTemplate = parseTemplate(rule.topic);
      for (const part of topicTemplate) {
        if ('variable' in part && !names.has(part.variable)) {
          throw new ConfigError(
            `topicRules[${index}].topic: {${part.variable}} is not a placeholder of pattern "${rule.pattern}"`,
          );
        }
      }
      return { levels, stream: rule.stream, topicTemplate };
    });
  }

  /** Devices publish to the same few topics over and over; mapping each once is enough. */
  private readonly cache = new Map<string, MappedTopic | undefined>();

  map(mqttTopic: string): MappedTopic | undefined {
    const cached = this.cache.get(mqttTopic);
    if (cached !== undefined || this.cache.has(mqttTopic)) return cached;
    const mapped = this.mapUncached(mqttTopic);
    // Bounded: a client cycling through random topics must not grow it without end.
    if (this.cache.size >= MAX_CACHED_TOPICS) this.cache.clear();
    this.cache.set(mqttTopic, mapped);
    return mapped;
  }

  private mapUncached(mqttTopic: string): MappedTopic | undefined {
    const levels = mqttTopic.split('/');
    for (const rule of this.rules) {
      if (rule.levels.length !== levels.length) continue;
      const variables: Record<string, string> = {};
      let matched = true;
      for (let i = 0; i < levels.length; i += 1) {
        const expected = rule.levels[i]!;
        const actual = levels[i]!;
        if ('literal' in expected) {
          if (expected.literal !== actual) {
            matched = false;
            break;
          }
        } else {
          if (actual.length === 0) {
            matched = false;
            break;
          }
          variables[expected.variable] = actual;
        }
      }
      if (!matched) continue;
      const topic = rule.topicTemplate
        .map((part) => ('literal' in part ? part.literal : variables[part.variable]))
        .join('');
      return { stream: rule.stream, topic, variables };
    }
    return undefined;
  }
}
