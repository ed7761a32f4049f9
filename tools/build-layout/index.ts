/**
 * Where the project's files are, from any module, whichever way it runs.
 *
 * A module can run from three places: its TypeScript source (under vitest), tsc's tree
 * (`dist/<folder>/…`, one file per module) and the bundle (`dist/bin/`: the command line, its
 * workers and the chunks they share, written by tools/bundle). A path relative to the module
 * itself points somewhere else in each, so callers that start processes or read files of the
 * project ask here instead: everything is found from the project's root, the nearest folder
 * above the module that holds the project's package.json.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const PACKAGE_NAME = 'portcall';

function isProjectRoot(dir: string): boolean {
  const manifest = join(dir, 'package.json');
  if (!existsSync(manifest)) return false;
  try {
    return (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: unknown }).name === PACKAGE_NAME;
  } catch {
    return false;
  }
}

let root: string | undefined;

/** The project's root folder. */
export function projectRoot(): string {
  if (root !== undefined) return root;
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    if (isProjectRoot(dir)) return (root = dir);
    if (dirname(dir) === dir) throw new Error(`no ${PACKAGE_NAME} package.json above ${fileURLToPath(import.meta.url)}`);
  }
}

/** The bundled `portcall` command line (tools/bundle), whether or not it was built yet. */
export function bundledEntry(): string {
  return join(projectRoot(), 'dist', 'bin', 'portcall.js');
}

/** The `portcall` command line to start as a child process: the bundle, or tsc's tree before a bundle was built. */
export function portcallEntry(): string {
  const bundled = bundledEntry();
  return existsSync(bundled) ? bundled : join(projectRoot(), 'dist', 'cli', 'portcall.js');
}

/** A module of tsc's tree, for a child process that imports it by path (`edge/log/index.js`). */
export function compiledModule(relativePath: string): string {
  return join(projectRoot(), 'dist', relativePath);
}

/** A file of the source tree that the build does not copy (`bench/java/…`). */
export function sourceFile(relativePath: string): string {
  return join(projectRoot(), relativePath);
}
