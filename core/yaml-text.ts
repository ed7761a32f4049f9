/**
 * Reading a configuration file's YAML strictly: warnings refuse the file too. The `yaml`
 * library's plain `parse` prints a warning for an unknown tag (`!secret`, say) and reads the
 * value as a plain string, so a setting the author meant to be resolved would silently be
 * the literal text; every file the product reads (site config, device credentials, fleet
 * scenarios) goes through here instead, so they all refuse it the same way.
 */
import { parseDocument } from 'yaml';

/**
 * The document's value (`undefined` for an empty file). Throws an Error whose message names
 * the first problem and where it is, for the caller to wrap in its own error with the file name.
 */
export function parseStrictYaml(text: string): unknown {
  const document = parseDocument(text, { logLevel: 'silent' });
  const problem = document.errors[0] ?? document.warnings[0];
  if (problem !== undefined) throw new Error(problem.message);
  return document.toJS() as unknown;
}
