import { describe, expect, it } from 'vitest';
import { choiceFromEnvironment, formatJsonLines, formatTable, optionalWholeNumberFromEnvironment, wholeNumberFromEnvironment, type Figure } from '../bench/index.js';
import { ConfigError } from '../core/index.js';

const figures: Figure[] = [
  { scenario: 'thin-path', metric: 'readings', value: 12_345.6, unit: 'readings/s', baseline: 'mosquitto', baselineValue: 24_691.2 },
  { scenario: 'log', metric: 'open time', value: 0.5, unit: 's' },
];

describe('bench output', () => {
  it('prints one JSON object per figure with the agreed fields', () => {
    const lines = formatJsonLines(figures).split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines).toEqual([
      { scenario: 'thin-path', metric: 'readings', value: 12_345.6, unit: 'readings/s', baseline: 'mosquitto', baselineValue: 24_691.2 },
      { scenario: 'log', metric: 'open time', value: 0.5, unit: 's', baseline: null, baselineValue: null },
    ]);
  });

  it('prints a table with the ratio to the baseline', () => {
    const table = formatTable(figures);
    expect(table.split('\n')[0]).toMatch(/^scenario\s+metric\s+value\s+baseline\s+baseline value\s+ratio$/);
    expect(table).toContain('12,346 readings/s');
    expect(table).toContain('0.50×');
  });

  it('reads a scenario\'s whole-number knob from the environment, naming the variable when it is out of range', () => {
    const name = 'PORTCALL_TEST_BENCH_RUNS';
    try {
      delete process.env[name];
      expect(wholeNumberFromEnvironment(name, 1, 1, 9)).toBe(1);
      process.env[name] = ' ';
      expect(wholeNumberFromEnvironment(name, 1, 1, 9)).toBe(1);
      expect(optionalWholeNumberFromEnvironment(name, 1, 9)).toBeUndefined();
      process.env[name] = '5';
      expect(wholeNumberFromEnvironment(name, 1, 1, 9)).toBe(5);
      expect(optionalWholeNumberFromEnvironment(name, 1, 9)).toBe(5);
      for (const bad of ['0', '10', '2.5', 'many']) {
        process.env[name] = bad;
        expect(() => wholeNumberFromEnvironment(name, 1, 1, 9)).toThrow(ConfigError);
        expect(() => wholeNumberFromEnvironment(name, 1, 1, 9)).toThrow(`${name}: ${bad} is not a whole number from 1 to 9`);
        expect(() => optionalWholeNumberFromEnvironment(name, 1, 9)).toThrow(ConfigError);
      }
    } finally {
      delete process.env[name];
    }
  });

  it('reads a scenario\'s choice from the environment, naming the variable and the choices when it is none of them', () => {
    const name = 'PORTCALL_TEST_BENCH_CODEC';
    const choices = ['none', 'gzip', 'lz4'] as const;
    try {
      delete process.env[name];
      expect(choiceFromEnvironment(name, choices, 'lz4')).toBe('lz4');
      process.env[name] = ' gzip ';
      expect(choiceFromEnvironment(name, choices, 'lz4')).toBe('gzip');
      process.env[name] = 'zstd';
      expect(() => choiceFromEnvironment(name, choices, 'lz4')).toThrow(ConfigError);
      expect(() => choiceFromEnvironment(name, choices, 'lz4')).toThrow(`${name}: zstd is not one of none, gzip, lz4`);
    } finally {
      delete process.env[name];
    }
  });
});
