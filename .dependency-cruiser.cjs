/**
 * Architecture boundaries, checked in `npm test`.
 *
 * Data flows left to right:
 *   devices → edge/gateway → edge/log → edge/detectors → edge/forwarder → edge/link → cloud/ingest
 *     → cloud/kafka-log → cloud/read-api → cloud/portal
 * A stage never imports a stage to its right: it is handed what it pushes into, and only the
 * composition roots (site/, cli/, bench/) wire stages together. core/ (record identity,
 * errors, contracts) is below every stage and imports none of them. tools/ (a Kafka broker
 * and a Mosquitto for tests and benchmarks) is used by composition roots and tests only.
 */
const STAGES = [
  'devices',
  'edge/gateway',
  'edge/log',
  'edge/detectors',
  'edge/forwarder',
  'edge/link',
  'cloud/ingest',
  'cloud/kafka-log',
  'cloud/customer-topics',
  'cloud/read-api',
  'cloud/portal',
];

const escapeRegex = (path) => path.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

const rightwardRules = STAGES.flatMap((stage, index) => {
  const rightOf = STAGES.slice(index + 1);
  if (rightOf.length === 0) return [];
  return [
    {
      name: `no-rightward-import-from-${stage.replace('/', '-')}`,
      comment: `${stage} may not import a stage to its right (${rightOf.join(', ')}); have the composition root hand it what it pushes into`,
      severity: 'error',
      from: { path: `^${escapeRegex(stage)}/` },
      to: { path: `^(${rightOf.map(escapeRegex).join('|')})/` },
    },
  ];
});

module.exports = {
  forbidden: [
    ...rightwardRules,
    {
      name: 'stages-do-not-import-composition-roots',
      comment: 'only composition roots (site/, cli/, bench/) wire stages; a stage never imports one',
      severity: 'error',
      from: { path: `^(core|${STAGES.map(escapeRegex).join('|')})/` },
      to: { path: '^(site|cli|bench)/' },
    },
    {
      name: 'core-imports-no-stage',
      comment: 'core/ holds identity, errors and contracts; it depends on no stage',
      severity: 'error',
      from: { path: '^core/' },
      to: { path: '^(devices|edge|cloud|tools)/' },
    },
    {
      name: 'stages-do-not-import-tools',
      comment: 'tools/ are test and benchmark fixtures (brokers); production stages never depend on them',
      severity: 'error',
      from: { path: `^(core|${STAGES.map(escapeRegex).join('|')})/` },
      to: { path: '^tools/' },
    },
    {
      name: 'kafkajs-only-in-kafka-log',
      comment:
        'kafkajs is no longer maintained upstream; the site reaches Kafka only through cloud/kafka-log, so a change of client touches that one component (tools/ and bench/ use it for brokers and baselines)',
      severity: 'error',
      from: { path: '^(core|devices|edge|site|cli|cloud/(?!kafka-log/))' },
      to: { path: 'node_modules/kafkajs/' },
    },
    {
      name: 'access-depends-on-core-only',
      comment:
        'cloud/access is the one policy module (issue 8): it sees the log only through core contracts, so no stage can be bypassed by importing it the other way round',
      severity: 'error',
      from: { path: '^cloud/access/' },
      to: { path: '^(devices|edge|cloud/(?!access/)|site|cli|bench|tools)/' },
    },
    {
      name: 'only-composition-roots-import-access',
      comment: 'stages ask the policy through core/access.ts contracts (RecordFilter, ReadAccess) handed to them by a composition root',
      severity: 'error',
      from: { path: `^(core|${STAGES.map(escapeRegex).join('|')})/` },
      to: { path: '^cloud/access/' },
    },
    {
      name: 'no-circular',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^dist/|\\.test\\.ts$)' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
