/**
 * The chaos suite of issue 11: the whole system (fleet → ship → two ports → headquarters on
 * Kafka) under load while a seeded schedule of faults runs, then an accounting of every
 * message: generated, acknowledged, delivered per site, lost and duplicated
 * (docs/RELIABILITY.md). Used by `portcall chaos` and test/chaos.test.ts.
 */
export { runChaos, type ChaosOptions, type ChaosReport, type InjectedFault, type FaultKindSummary } from './run.js';
export { planSchedule, parseFaultMix, formatFaultMix, faultCount, DEFAULT_FAULT_MIX, FAULT_KINDS, type FaultKind, type FaultMix, type PlannedFault, type ScheduleOptions } from './schedule.js';
export { formatChaosReport, formatSchedule } from './report.js';
export { account, type SiteAccount } from './accounting.js';
export { SITES, LINKS, linkName } from './system.js';
