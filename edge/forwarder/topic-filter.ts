/**
 * A link's topic filter (`links[].filter.topics`): names and patterns where `*` matches any
 * run of characters and `?` one character; everything else is literal. A record goes over
 * the link only if its topic matches one of them.
 */
export function topicMatcher(patterns: readonly string[]): (topic: string) => boolean {
  const exact = new Set<string>();
  const expressions: RegExp[] = [];
  for (const pattern of patterns) {
    if (!/[*?]/.test(pattern)) {
      exact.add(pattern);
      continue;
    }
    const source = pattern
      .split('')
      .map((character) => (character === '*' ? '.*' : character === '?' ? '.' : character.replace(/[.+^${}()|[\]\\/-]/g, '\\$&')))
      .join('');
    expressions.push(new RegExp(`^${source}$`, 's'));
  }
  return (topic) => exact.has(topic) || expressions.some((expression) => expression.test(topic));
}
