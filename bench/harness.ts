/**
 * Benchmark harness. A scenario measures the product and, in the same run, the alternative a
 * user would compare it with, and returns figures. Benchmarks report; they never assert.
 */
import { ConfigError } from '../core/index.js';

export interface Figure {
  readonly scenario: string;
  readonly metric: string;
  readonly value: number;
  readonly unit: string;
  /** Name of the comparison measured in the same run, e.g. "mosquitto" or "gzip-json". */
  readonly baseline?: string;
  readonly baselineValue?: number;
}

export interface BenchContext {
  /** Progress for the person waiting: one line at a time, to stderr. */
  progress(line: string): void;
  /** Scales the amount of work; 1 is the default size. */
  readonly scale: number;
}

export interface Scenario {
  readonly name: string;
  readonly description: string;
  run(context: BenchContext): Promise<Figure[]>;
}

/**
 * A whole number a scenario reads from the environment (`PORTCALL_<SCENARIO>_…`), `fallback`
 * when unset; anything else outside min..max stops the run with the variable named (a
 * ConfigError: `portcall bench` prints its message, not a stack).
 */
export function wholeNumberFromEnvironment(name: string, fallback: number, min: number, max: number): number {
  return optionalWholeNumberFromEnvironment(name, min, max) ?? fallback;
}

/** The same for a knob with no default: undefined when unset (or blank). */
export function optionalWholeNumberFromEnvironment(name: string, min: number, max: number): number | undefined {
  const text = process.env[name]?.trim();
  if (text === undefined || text === '') return undefined;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) throw new ConfigError(`${name}: ${text} is not a whole number from ${min} to ${max}`);
  return value;
}

/**
 * One of `choices` a scenario reads from the environment, `fallback` when unset (or blank);
 * anything else stops the run with the variable and the choices named (a ConfigError).
 */
export function choiceFromEnvironment<T extends string>(name: string, choices: readonly T[], fallback: T): T {
  const text = process.env[name]?.trim();
  if (text === undefined || text === '') return fallback;
  if (!(choices as readonly string[]).includes(text)) throw new ConfigError(`${name}: ${text} is not one of ${choices.join(', ')}`);
  return text as T;
}

function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (Math.abs(value) >= 100) return Math.round(value).toLocaleString('en-US');
  return value.toPrecision(3);
}

export function formatTable(figures: readonly Figure[]): string {
  const rows = figures.map((figure) => [
    figure.scenario,
    figure.metric,
    `${formatNumber(figure.value)} ${figure.unit}`,
    figure.baseline ?? '',
    figure.baselineValue === undefined ? '' : `${formatNumber(figure.baselineValue)} ${figure.unit}`,
    figure.baselineValue === undefined || figure.baselineValue === 0
      ? ''
      : `${(figure.value / figure.baselineValue).toFixed(2)}×`,
  ]);
  const header = ['scenario', 'metric', 'value', 'baseline', 'baseline value', 'ratio'];
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: string[]) => cells.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd();
  return [line(header), line(widths.map((width) => '-'.repeat(width))), ...rows.map(line)].join('\n');
}

export function formatJsonLines(figures: readonly Figure[]): string {
  return figures
    .map((figure) =>
      JSON.stringify({
        scenario: figure.scenario,
        metric: figure.metric,
        value: figure.value,
        unit: figure.unit,
        baseline: figure.baseline ?? null,
        baselineValue: figure.baselineValue ?? null,
      }),
    )
    .join('\n');
}
