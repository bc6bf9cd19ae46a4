// Figures: per-round lines, the summary table, machine facts, and the JSON file.

import { mkdirSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import { libraryBuild } from './library.js';
import type { ClientMeasure } from './load.js';
import type { ServerKind, WorkloadName } from './protocol.js';

/** A client using this share of its core or more may be the limit, not the server. */
export const CLIENT_BOUND_CPU = 0.9;
/** Other programs using this much CPU (in cores) during a run disturbed it. */
export const DISTURBED_CORES = 0.1;

/** One server's share of a round. */
export interface ServerRound {
  readonly kind: ServerKind;
  readonly client: ClientMeasure;
  /** Server CPU time / wall time over the round (1 = its core saturated). */
  readonly serverCpu: number;
  readonly handled: number;
  readonly serverErrors: number;
  /**
   * The memory the server's JS holds when the round ended: its heap and what its objects hold outside it
   * (Buffers), after a full collection when it runs with --expose-gc.
   */
  readonly liveBytes: number;
  /** CPU used by other programs during the run, in cores (the partner's not counted); undefined where /proc/stat is missing. */
  readonly otherCores: number | undefined;
  /** The process the server works with (measure.ts Partner: Redis) and the CPU it used during the run, in cores. */
  readonly partner?: { readonly name: string; readonly cores: number };
  /** Why the round does not count (errors, non-2xx…); empty when valid. */
  readonly problems: readonly string[];
}

export interface RoundPair {
  readonly round: number;
  readonly order: readonly ServerKind[];
  readonly bare: ServerRound;
  readonly ours: ServerRound;
  /** ours req/s ÷ bare req/s in this round. */
  readonly ratio: number;
  /** bare and ours both valid (the control's problems count only against its own figures). */
  readonly valid: boolean;
  /** bench:http: the async-context control's run in this round (ServerKind 'control'). */
  readonly control?: ServerRound;
}

/** control req/s ÷ bare req/s, and ours ÷ control, in a round that has a control (valid or not: see controlValid). */
export function controlRatios(pair: RoundPair): { readonly controlVsBare: number; readonly oursVsControl: number } | undefined {
  const control = pair.control;
  if (control === undefined) return undefined;
  return { controlVsBare: control.client.reqPerSec / pair.bare.client.reqPerSec, oursVsControl: pair.ours.client.reqPerSec / control.client.reqPerSec };
}

/** The round's three runs are all valid, so its control ratios count in the medians. */
export const controlValid = (pair: RoundPair): boolean => pair.valid && pair.control !== undefined && pair.control.problems.length === 0;

export interface Check {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

export interface WorkloadResult {
  readonly name: WorkloadName;
  readonly title: string;
  readonly target: number;
  readonly rounds: readonly RoundPair[];
  /** Median over valid rounds; undefined when none is valid. */
  readonly medianRatio: number | undefined;
  /** Medians over the rounds with a valid control (controlRatios), and how many there were. */
  readonly control?: { readonly medianControlVsBare: number | undefined; readonly medianOursVsControl: number | undefined; readonly rounds: number };
  /** Median over valid rounds that no other program disturbed (see noise.ts), and how many there were. */
  readonly undisturbed: { readonly medianRatio: number | undefined; readonly rounds: number };
  readonly checks: readonly Check[];
  readonly met: boolean;
}

export const isDisturbed = (run: ServerRound): boolean => (run.otherCores ?? 0) >= DISTURBED_CORES;

export function median(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function machineInfo(): Record<string, string | number> {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    availableParallelism: os.availableParallelism(),
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    node: process.version,
    date: new Date().toISOString(),
    /** Which build of the library the benchmark ran (bench/library.ts). */
    library: libraryBuild(),
  };
}

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const percent = (share: number): string => `${Math.round(share * 100)}%`;
export const ratioText = (ratio: number | undefined): string => (ratio === undefined ? 'n/a' : `${ratio.toFixed(3)}x`);

/** Pads columns to their widest cell; the first column is left-aligned, the others right-aligned. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]?.length ?? 0)));
  return rows.map((row) => row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ').trimEnd()).join('\n');
}

// Rounds are printed as they finish, so their columns have fixed widths (the header's, at least).
const ROUND_COLUMNS: readonly (readonly [title: string, width: number])[] = [
  ['round', 5], ['server', 7], ['req/s', 8], ['p50 ms', 6], ['p99 ms', 6], ['errors', 6], ['non2xx', 6], ['client CPU', 10], ['server CPU', 10], ['other CPU', 9], ['vs bare', 0],
];

function roundLine(cells: readonly string[]): string {
  return cells.map((cell, c) => {
    const [title, width] = ROUND_COLUMNS[c]!;
    const size = Math.max(title.length, width);
    return c <= 1 ? cell.padEnd(size) : c === cells.length - 1 ? cell : cell.padStart(size);
  }).join('  ').trimEnd();
}

export const roundHeader = (): string => roundLine(ROUND_COLUMNS.map(([title]) => title));

/** Lines for one round: one per server, in the order they ran; each server but bare with its ratio to bare. */
export function roundLines(pair: RoundPair): string {
  const control = controlRatios(pair);
  return pair.order.map((kind, i) => {
    const r = kind === 'bare' ? pair.bare : kind === 'control' ? pair.control! : pair.ours;
    const c = r.client;
    const flags = (r.partner === undefined ? '' : ` (${r.partner.name} ${percent(r.partner.cores)})`)
      + (c.clientCpu >= CLIENT_BOUND_CPU ? ' (client-bound?)' : '')
      + (isDisturbed(r) ? ' (disturbed)' : '')
      + (r.problems.length > 0 ? ` INVALID: ${r.problems.join(', ')}` : '');
    return [
      i === 0 ? String(pair.round) : '',
      kind,
      integer.format(c.reqPerSec),
      String(c.latencyP50Ms),
      String(c.latencyP99Ms),
      String(c.errors + c.timeouts),
      String(c.non2xx),
      percent(c.clientCpu),
      percent(r.serverCpu),
      r.otherCores === undefined ? 'n/a' : percent(r.otherCores),
      kind === 'bare' ? flags.trim() : ratioText(kind === 'control' ? control?.controlVsBare : pair.ratio) + flags,
    ];
  }).map(roundLine).join('\n');
}

export function summaryTable(results: readonly WorkloadResult[]): string {
  const rows = [['workload', 'median ours/bare', 'min', 'max', 'valid rounds', 'undisturbed median', 'target', 'result', 'control/bare', 'ours/control']];
  for (const w of results) {
    const ratios = w.rounds.filter((p) => p.valid).map((p) => p.ratio);
    const checksOk = w.checks.every((c) => c.ok);
    rows.push([
      w.title,
      ratioText(w.medianRatio),
      ratioText(ratios.length > 0 ? Math.min(...ratios) : undefined),
      ratioText(ratios.length > 0 ? Math.max(...ratios) : undefined),
      `${ratios.length}/${w.rounds.length}`,
      `${ratioText(w.undisturbed.medianRatio)} (${w.undisturbed.rounds})`,
      `>= ${w.target.toFixed(2)}x`,
      w.met ? 'met' : checksOk ? 'NOT MET' : 'NOT MET (checks failed)',
      ratioText(w.control?.medianControlVsBare),
      ratioText(w.control?.medianOursVsControl),
    ]);
  }
  return table(rows);
}

export function writeJson(path: URL, data: unknown): void {
  mkdirSync(new URL('.', path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(data, null, 2)}\n`);
}

/** The command-line options every load benchmark takes (`parseArgs` options; each script adds its own). */
export const LOAD_OPTIONS = {
  duration: { type: 'string' },
  rounds: { type: 'string' },
  connections: { type: 'string', default: '50' },
  quick: { type: 'boolean', default: false },
} as const;

/** A command-line option that must be a whole number > 0 (`fallback` when absent). */
export function wholeOption(name: string, text: string | undefined, fallback: number): number {
  const value = text === undefined ? fallback : Number(text);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`--${name} must be a whole number > 0, got ${text}`);
  return value;
}
