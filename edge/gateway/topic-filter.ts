/**
 * MQTT topic filters (`+` one level, `#` the rest) as used in device access rules, with a
 * device's own identity substituted for `{id}` and `{attribute}` placeholders.
 */

/** True when `topic` (no wildcards) matches `filter` (MQTT 3.1.1 §4.7 wildcards). */
export function topicMatches(filter: string, topic: string): boolean {
  const filterLevels = filter.split('/');
  const topicLevels = topic.split('/');
  for (let i = 0; i < filterLevels.length; i += 1) {
    const level = filterLevels[i]!;
    if (level === '#') return i < topicLevels.length || i === topicLevels.length;
    if (i >= topicLevels.length) return false;
    if (level !== '+' && level !== topicLevels[i]) return false;
  }
  return filterLevels.length === topicLevels.length;
}

/** Characters that would widen a topic filter or split a level if they came from an identity. */
export function isSafeIdentity(value: string): boolean {
  return value.length > 0 && !/[+#/]/.test(value) && !value.includes('\u0000');
}

/** Replaces `{name}` with `values[name]`; an unknown placeholder is left for the caller to refuse. */
export function substitute(template: string, values: Readonly<Record<string, string>>): string {
  return template.replace(/\{([A-Za-z][A-Za-z0-9_]*)\}/g, (whole, name: string) => values[name] ?? whole);
}
