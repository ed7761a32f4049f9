/**
 * The chaos run's fault schedule: a seeded, bounded list of faults, each at a moment of the
 * fault phase with its own parameters. The same seed, duration, rate and mix give the same
 * schedule, so a failing run can be repeated (or its schedule saved and replayed).
 */
import { mulberry32 } from '../../devices/fleet/index.js';

export const FAULT_KINDS = ['kill', 'flap', 'reset', 'stall', 'disk-full', 'kafka-restart', 'clock-skew'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** Relative weights of the fault kinds. */
export type FaultMix = Readonly<Record<FaultKind, number>>;

export const DEFAULT_FAULT_MIX: FaultMix = {
  kill: 30,
  flap: 14,
  reset: 18,
  stall: 10,
  'disk-full': 10,
  'kafka-restart': 6,
  'clock-skew': 12,
};

export interface PlannedFault {
  /** Milliseconds after the fault phase began. */
  readonly atMs: number;
  readonly kind: FaultKind;
  /** A site (kill), a link `FROM>TO` (flap, reset, stall), `AURORA` (disk-full), `kafka`, or `fleet` (clock-skew). */
  readonly target: string;
  /** How long the fault holds (process down before restart, link down, stall, disk full, broker down, skew). */
  readonly holdMs: number;
  /** clock-skew only: how far the devices' clocks move (negative: back). */
  readonly skewMs?: number;
}

export interface ScheduleOptions {
  readonly seed: number;
  /** Length of the fault phase. */
  readonly durationMs: number;
  readonly faultsPerMinute: number;
  readonly mix: FaultMix;
  readonly sites: readonly string[];
  readonly links: readonly string[];
  /** Whether the ship's disk can be filled (a tmpfs could be mounted); otherwise no disk-full is planned. */
  readonly diskFull: boolean;
}

/** Nothing is planned in the first and last seconds of the phase: the system starts, and settles. */
const EDGE_MS = 3000;

export function faultCount(durationMs: number, faultsPerMinute: number): number {
  return Math.max(0, Math.round((durationMs / 60_000) * faultsPerMinute));
}

/** `kill=30,flap=10,…` → a mix; kinds left out weigh 0. */
export function parseFaultMix(text: string): FaultMix {
  const mix: Record<FaultKind, number> = Object.fromEntries(FAULT_KINDS.map((kind) => [kind, 0])) as Record<FaultKind, number>;
  for (const part of text.split(',').map((entry) => entry.trim()).filter((entry) => entry !== '')) {
    const [name, weight] = part.split('=');
    if (!(FAULT_KINDS as readonly string[]).includes(name ?? '')) throw new Error(`unknown fault kind "${name}"; known: ${FAULT_KINDS.join(', ')}`);
    const value = weight === undefined ? 1 : Number(weight);
    if (!Number.isFinite(value) || value < 0) throw new Error(`fault weight of ${name} must be a number >= 0, got "${weight}"`);
    mix[name as FaultKind] = value;
  }
  if (Object.values(mix).every((value) => value === 0)) throw new Error('the fault mix gives every kind weight 0');
  return mix;
}

export function formatFaultMix(mix: FaultMix): string {
  return FAULT_KINDS.filter((kind) => mix[kind] > 0).map((kind) => `${kind}=${mix[kind]}`).join(',');
}

export function planSchedule(options: ScheduleOptions): PlannedFault[] {
  const random = mulberry32(options.seed);
  const between = (low: number, high: number) => Math.round(low + random() * (high - low));
  // Targets come in rounds: each round hits every site (or link) once, in a seeded order, so
  // even a short run kills the ship and flaps every link, not just whatever a die favours.
  const rotation = <T>(items: readonly T[]) => {
    let round: T[] = [];
    return (): T => {
      if (round.length === 0) {
        round = [...items];
        for (let i = round.length - 1; i > 0; i -= 1) {
          const j = Math.floor(random() * (i + 1));
          [round[i], round[j]] = [round[j]!, round[i]!];
        }
      }
      return round.pop()!;
    };
  };
  const nextSite = rotation(options.sites);
  const nextLink = rotation(options.links);
  const weights = FAULT_KINDS.map((kind) => (kind === 'disk-full' && !options.diskFull ? 0 : options.mix[kind]));
  const total = weights.reduce((sum, weight) => sum + weight, 0);
  if (total <= 0) return [];
  const count = faultCount(options.durationMs, options.faultsPerMinute);
  const window = Math.max(1, options.durationMs - 2 * EDGE_MS);
  const times = Array.from({ length: count }, () => EDGE_MS + Math.floor(random() * window)).sort((a, b) => a - b);
  return times.map((atMs) => {
    let draw = random() * total;
    let index = 0;
    while (draw >= weights[index]! && index < weights.length - 1) {
      draw -= weights[index]!;
      index += 1;
    }
    const kind = FAULT_KINDS[index]!;
    switch (kind) {
      case 'kill':
        return { atMs, kind, target: nextSite(), holdMs: between(0, 3000) };
      case 'flap':
        return { atMs, kind, target: nextLink(), holdMs: between(1000, 8000) };
      case 'reset':
        return { atMs, kind, target: nextLink(), holdMs: 0 };
      case 'stall':
        return { atMs, kind, target: nextLink(), holdMs: between(2000, 10_000) };
      case 'disk-full':
        return { atMs, kind, target: 'AURORA', holdMs: between(2000, 8000) };
      case 'kafka-restart':
        return { atMs, kind, target: 'kafka', holdMs: between(1000, 5000) };
      case 'clock-skew': {
        // Minutes to a week, forward or back.
        const magnitude = between(60_000, 7 * 86_400_000);
        return { atMs, kind, target: 'fleet', holdMs: between(3000, 15_000), skewMs: random() < 0.5 ? -magnitude : magnitude };
      }
    }
  });
}
