// Scale: what an idle session costs in memory, and whether finding one slows down when there are a
// million. `npm run bench:scale` (node --expose-gc --import tsx bench/scale.ts).
//
//   node --expose-gc --import tsx bench/scale.ts [--sizes 1000,100000,1000000] [--lookups 200000]
//                                                [--breakdown 10000 | --no-breakdown] [--no-control] [--quick]
//
// One engine (maxSessions and maxConcurrentProcesses at the largest size) grows through the sizes.
// Sessions are made the way the adapters make them: engine.acquire({ sessionId: undefined, ip }) then
// lease.release(), so each one is a real idle session with empty vars (no init). At each size, after
// forced GC, heapUsed and RSS are compared with the same engine empty: the difference / sessions is the
// cost of one idle session. The ids this script keeps for the lookups are 16 bytes each in a Buffer
// allocated (and zero-filled, so its pages are resident) before the baseline: outside the JS heap and
// already in the baseline RSS, so neither figure includes them.
// Lookup latency: acquire + release of an existing session, a random one each time, its id a fresh
// string as a cookie parser would produce, timed one by one with process.hrtime.bigint(); median and p99
// at the smallest and the largest size. As a control (unless --no-control), the same lookups on a bare
// Map<string, object> of the same sizes, keyed by crypto.randomUUID() too: the part of any slowdown that
// comes from the machine (caches, TLB) rather than from the engine. Around every timed loop, other
// programs' CPU is read from /proc/stat (noise.ts) and a loop they disturbed is flagged.
// Then (unless --no-breakdown) a heap snapshot diff over a fresh engine with a few thousand idle
// sessions says which objects make up one idle session.
// Exit code 1 only when a measurement is invalid (a session evicted or closed, a lookup that did not
// find its session, no --expose-gc); a missed target is printed, not a failure.

import { Buffer } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as v8 from 'node:v8';
import type { SessionEngine as Engine } from '../src/index.js';
import { buildLibraryForServers, loadCore } from './library.js';
import { foreignCores, readCoreBusy } from './noise.js';
import { DISTURBED_CORES, machineInfo, table, writeJson } from './report.js';

const RESULTS_FILE = new URL('./results/scale.json', import.meta.url);
const IP = '127.0.0.1';
const TARGET_BYTES_PER_SESSION = 500;
/** A lookup at the largest size may be this much slower than at the smallest and still count as unchanged. */
const UNCHANGED_RATIO = 1.5;

// The build first, before anything is measured (bench/library.ts).
buildLibraryForServers();
const { SessionEngine } = await loadCore();

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) {
  console.error('bench/scale.ts needs --expose-gc: npm run bench:scale');
  process.exit(1);
}
const collect: () => void = gc;

interface Settings {
  readonly sizes: readonly number[];
  readonly lookups: number;
  readonly breakdown: number;
  readonly control: boolean;
}

function readSettings(): Settings {
  const { values } = parseArgs({
    options: {
      sizes: { type: 'string' },
      lookups: { type: 'string' },
      breakdown: { type: 'string' },
      'no-breakdown': { type: 'boolean', default: false },
      'no-control': { type: 'boolean', default: false },
      quick: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log('usage: npm run bench:scale -- [--sizes 1000,100000,1000000] [--lookups 200000] [--breakdown 10000 | --no-breakdown] [--no-control] [--quick]');
    process.exit(0);
  }
  const whole = (name: string, text: string): number => {
    const value = Number(text);
    if (!Number.isInteger(value) || value <= 0) throw new Error(`--${name} must be a positive whole number, got ${text}`);
    return value;
  };
  const sizes = (values.sizes ?? (values.quick ? '1000,100000' : '1000,100000,1000000')).split(',').map((s) => whole('sizes', s.trim()));
  for (let i = 1; i < sizes.length; i++) if (sizes[i]! <= sizes[i - 1]!) throw new Error('--sizes must be increasing');
  return {
    sizes,
    lookups: whole('lookups', values.lookups ?? (values.quick ? '20000' : '200000')),
    breakdown: values['no-breakdown'] ? 0 : whole('breakdown', values.breakdown ?? '10000'),
    control: !values['no-control'],
  };
}

// ---- memory ----------------------------------------------------------------------------------------

interface Memory {
  readonly heapUsed: number;
  readonly rss: number;
}

/** Several full GCs with a turn of the event loop between them (finalizers, weak callbacks, promise jobs). */
async function settledMemory(): Promise<Memory> {
  for (let i = 0; i < 4; i++) {
    collect();
    await new Promise((resolve) => setImmediate(resolve));
  }
  const { heapUsed, rss } = process.memoryUsage();
  return { heapUsed, rss };
}

/** Session ids as 16 bytes each (a UUID without its dashes), outside the JS heap. */
class IdStore {
  readonly #bytes: Buffer;
  #count = 0;

  constructor(capacity: number) {
    // Buffer.alloc zero-fills: every page is touched now, before the baseline, so RSS deltas exclude it.
    this.#bytes = Buffer.alloc(capacity * 16);
  }

  get count(): number {
    return this.#count;
  }

  get bytes(): number {
    return this.#bytes.length;
  }

  push(id: string): void {
    // Read through a copy: crypto.randomUUID() returns a rope (a tree of concatenated strings) and most
    // string operations flatten their receiver in place, which would shrink the engine's own id and
    // flatter the figure. Flattening the copy `${id}.` leaves `id` as the engine holds it.
    const hex = `${id}.`.replaceAll('-', '').slice(0, 32);
    if (hex.length !== 32) throw new Error(`not a UUID: ${id}`);
    this.#bytes.write(hex, this.#count * 16, 'hex');
    this.#count++;
  }

  /** A fresh string for session i, as a cookie parser would hand it to the engine. */
  id(i: number): string {
    const h = this.#bytes.toString('hex', i * 16, i * 16 + 16);
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }
}

async function createSessions(engine: Engine, ids: IdStore | undefined, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    ids?.push(lease.sessionId);
    lease.release();
  }
}

// ---- lookups ---------------------------------------------------------------------------------------

interface Latency {
  readonly sessions: number;
  readonly lookups: number;
  readonly medianNs: number;
  readonly p99Ns: number;
  readonly meanNs: number;
  readonly maxNs: number;
  /** Lookups that did not land in the session they named (must be 0). */
  readonly misses: number;
  /** CPU used by other programs during the timed loop, in cores (noise.ts); undefined where unknown. */
  readonly otherCores?: number | undefined;
}

const quantile = (sorted: Float64Array, q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

/** Runs `timed` and reports the CPU other programs used meanwhile, in cores. */
async function besideOthers(timed: () => Promise<void> | void): Promise<number | undefined> {
  const busy = readCoreBusy();
  const cpu = process.cpuUsage();
  const started = performance.now();
  await timed();
  const own = process.cpuUsage(cpu);
  return foreignCores(busy, readCoreBusy(), (own.user + own.system) / 1e6, (performance.now() - started) / 1000);
}

function summarize(times: Float64Array, sessions: number, misses: number): Latency {
  times.sort();
  let sum = 0;
  for (const t of times) sum += t;
  return { sessions, lookups: times.length, medianNs: quantile(times, 0.5), p99Ns: quantile(times, 0.99), meanNs: sum / times.length, maxNs: times[times.length - 1]!, misses };
}

/** Random ids of `ids`, each a fresh string, made before any timing starts. */
const randomIds = (ids: IdStore, n: number): string[] => Array.from({ length: n }, () => ids.id(Math.floor(Math.random() * ids.count)));

async function measureLookups(engine: Engine, ids: IdStore, lookups: number): Promise<Latency> {
  let misses = 0;
  const run = async (sample: readonly string[], into: Float64Array | undefined): Promise<void> => {
    for (let i = 0; i < sample.length; i++) {
      const sessionId = sample[i]!;
      const start = process.hrtime.bigint();
      const lease = await engine.acquire({ sessionId, ip: IP });
      lease.release();
      const end = process.hrtime.bigint();
      if (into !== undefined) into[i] = Number(end - start);
      // No string comparison with lease.sessionId here: comparing would flatten the engine's id (see IdStore).
      if (lease.isNewSession) misses++;
    }
  };
  const createdBefore = engine.stats().created;
  await run(randomIds(ids, Math.min(20_000, lookups)), undefined); // warm-up: JIT, inline caches
  const sample = randomIds(ids, lookups);
  collect(); // a full GC from the warm-up's garbage should not land in the timed loop
  const times = new Float64Array(lookups);
  const otherCores = await besideOthers(() => run(sample, times));
  return { ...summarize(times, ids.count, misses + engine.stats().created - createdBefore), otherCores };
}

/**
 * The floor set by the machine: a bare Map of the same size, keyed by crypto.randomUUID() like the
 * engine's, values small objects, looked up with fresh strings in random order. Only map.get is timed.
 */
async function measureMapLookups(size: number, lookups: number): Promise<Latency> {
  const ids = new IdStore(size);
  let map: Map<string, { n: number }> | undefined = new Map();
  for (let i = 0; i < size; i++) {
    const id = randomUUID();
    map.set(id, { n: i });
    ids.push(id);
  }
  let misses = 0;
  const run = (sample: readonly string[], into: Float64Array | undefined): void => {
    for (let i = 0; i < sample.length; i++) {
      const id = sample[i]!;
      const start = process.hrtime.bigint();
      const value = map!.get(id);
      const end = process.hrtime.bigint();
      if (into !== undefined) into[i] = Number(end - start);
      if (value === undefined) misses++;
    }
  };
  run(randomIds(ids, Math.min(20_000, lookups)), undefined);
  const sample = randomIds(ids, lookups);
  await settledMemory();
  const times = new Float64Array(lookups);
  const otherCores = await besideOthers(() => run(sample, times));
  map = undefined;
  return { ...summarize(times, size, misses), otherCores };
}

// ---- heap snapshot breakdown -----------------------------------------------------------------------

interface BreakdownRow {
  readonly kind: string;
  readonly objectsPerSession: number;
  readonly bytesPerSession: number;
}

interface Aggregate {
  count: number;
  bytes: number;
}

/** Writes a heap snapshot to a temporary file after forced GC; nothing of this script's analysis is on the heap yet. */
async function writeSnapshot(name: string): Promise<string> {
  await settledMemory();
  return v8.writeHeapSnapshot(join(tmpdir(), `scale-${process.pid}-${name}.heapsnapshot`));
}

/** Self sizes and counts by kind of every node of a snapshot file (deleted once read). */
function aggregate(file: string): Map<string, Aggregate> {
  const snapshot = JSON.parse(readFileSync(file, 'utf8')) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
    nodes: number[];
    strings: string[];
  };
  rmSync(file);
  const { node_fields: fields, node_types: [types] } = snapshot.snapshot.meta;
  const stride = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const byKind = new Map<string, Aggregate>();
  const { nodes, strings } = snapshot;
  for (let i = 0; i < nodes.length; i += stride) {
    const type = types[nodes[i + typeAt]!]!;
    const name = strings[nodes[i + nameAt]!]!;
    // Strings are named by their content: group them by type. Everything else by type and name
    // (the constructor for objects, "(object elements)" and the like for internal arrays).
    const kind = type.includes('string') ? type : `${type} ${name.length > 50 ? `${name.slice(0, 50)}…` : name}`;
    const entry = byKind.get(kind) ?? { count: 0, bytes: 0 };
    entry.count++;
    entry.bytes += nodes[i + sizeAt]!;
    byKind.set(kind, entry);
  }
  return byKind;
}

/**
 * Objects (by kind) that `count` idle sessions add to the heap, per session: two snapshots written to
 * files around the creation, both read afterwards, so the analysis itself is in neither.
 */
async function heapBreakdown(count: number): Promise<{ rows: BreakdownRow[]; totalPerSession: number }> {
  const engine = new SessionEngine({ maxSessions: count, maxConcurrentProcesses: count });
  try {
    const beforeFile = await writeSnapshot('before');
    await createSessions(engine, undefined, count);
    const afterFile = await writeSnapshot('after');
    const before = aggregate(beforeFile);
    const after = aggregate(afterFile);
    const rows: BreakdownRow[] = [];
    let total = 0;
    for (const [kind, a] of after) {
      const b = before.get(kind) ?? { count: 0, bytes: 0 };
      total += a.bytes - b.bytes;
      rows.push({ kind, objectsPerSession: (a.count - b.count) / count, bytesPerSession: (a.bytes - b.bytes) / count });
    }
    for (const [kind, b] of before) {
      if (after.has(kind)) continue;
      total -= b.bytes;
      rows.push({ kind, objectsPerSession: -b.count / count, bytesPerSession: -b.bytes / count });
    }
    rows.sort((x, y) => y.bytesPerSession - x.bytesPerSession);
    return { rows: rows.filter((r) => Math.abs(r.bytesPerSession) >= 1), totalPerSession: total / count };
  } finally {
    await engine.stop();
  }
}

// ---- main ------------------------------------------------------------------------------------------

interface SizeResult {
  readonly sessions: number;
  readonly heapBytesPerSession: number;
  readonly rssBytesPerSession: number;
  readonly heapUsedMiB: number;
  readonly rssMiB: number;
  readonly createSeconds: number;
}

const fmt = (n: number, digits = 0): string => n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
const us = (ns: number): string => fmt(ns / 1000, 2);
/** ", other CPU n%" and a flag when other programs disturbed the timing. */
const others = (latency: Latency): string => (latency.otherCores === undefined ? '' : `; other CPU ${Math.round(latency.otherCores * 100)}%${latency.otherCores >= DISTURBED_CORES ? ' (disturbed)' : ''}`);
const mib = (bytes: number): number => Math.round((bytes / 2 ** 20) * 10) / 10;

async function main(): Promise<void> {
  const settings = readSettings();
  const machine = machineInfo();
  const largest = settings.sizes.at(-1)!;
  const problems: string[] = [];
  console.log(`machine: ${machine.cpuModel}, ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.platform}, node ${machine.node}, ${machine.date}`);
  console.log(`scale: idle sessions with empty vars at ${settings.sizes.map((s) => fmt(s)).join(', ')}; ${fmt(settings.lookups)} timed lookups at ${fmt(settings.sizes[0]!)} and ${fmt(largest)}; heap limit ${fmt(v8.getHeapStatistics().heap_size_limit / 2 ** 20)} MiB`);

  const ids = new IdStore(largest);
  const engine = new SessionEngine({ maxSessions: largest, maxConcurrentProcesses: largest });
  const sizes: SizeResult[] = [];
  const latencies: Latency[] = [];
  let afterLookups: { heapBytesPerSession: number; rssBytesPerSession: number } | undefined;
  try {
    const base = await settledMemory();
    console.log(`baseline (engine empty, id buffer of ${fmt(ids.bytes / 2 ** 20, 1)} MiB allocated): heapUsed ${fmt(mib(base.heapUsed), 1)} MiB, rss ${fmt(mib(base.rss), 1)} MiB`);
    console.log(`${'sessions'.padEnd(9)} ${'heap B/session'.padStart(14)} ${'rss B/session'.padStart(13)} ${'heapUsed MiB'.padStart(12)} ${'rss MiB'.padStart(8)} ${'create s'.padStart(8)}`);
    for (const size of settings.sizes) {
      const started = performance.now();
      await createSessions(engine, ids, size - ids.count);
      const createSeconds = (performance.now() - started) / 1000;
      const now = await settledMemory();
      const result: SizeResult = {
        sessions: size,
        heapBytesPerSession: (now.heapUsed - base.heapUsed) / size,
        rssBytesPerSession: (now.rss - base.rss) / size,
        heapUsedMiB: mib(now.heapUsed),
        rssMiB: mib(now.rss),
        createSeconds,
      };
      sizes.push(result);
      console.log(`${fmt(size).padEnd(9)} ${fmt(result.heapBytesPerSession).padStart(14)} ${fmt(result.rssBytesPerSession).padStart(13)} ${fmt(result.heapUsedMiB, 1).padStart(12)} ${fmt(result.rssMiB, 1).padStart(8)} ${fmt(createSeconds, 2).padStart(8)}`);
      const stats = engine.stats();
      const closed = Object.values(stats.closed).reduce((a, b) => a + b, 0);
      if (stats.sessions !== size || stats.idleSessions !== size || closed !== 0) {
        problems.push(`at ${size}: ${stats.sessions} sessions, ${stats.idleSessions} idle, ${closed} closed (expected ${size} idle, none closed)`);
      }
      if (size === settings.sizes[0] || size === largest) {
        const latency = await measureLookups(engine, ids, settings.lookups);
        latencies.push(latency);
        console.log(`  lookup (acquire + release of a random existing session) at ${fmt(size)}: median ${us(latency.medianNs)} µs, p99 ${us(latency.p99Ns)} µs, mean ${us(latency.meanNs)} µs, max ${us(latency.maxNs)} µs over ${fmt(latency.lookups)}${others(latency)}`);
        if (latency.misses > 0) problems.push(`${latency.misses} lookups at ${size} did not find their session`);
        if (size === largest) {
          // Lookups compare and hash ids, write timestamps: if any of that changed what a session holds, it shows here.
          const after = await settledMemory();
          afterLookups = { heapBytesPerSession: (after.heapUsed - base.heapUsed) / size, rssBytesPerSession: (after.rss - base.rss) / size };
          console.log(`  after the lookups: ${fmt(afterLookups.heapBytesPerSession)} B heap, ${fmt(afterLookups.rssBytesPerSession)} B RSS per session`);
        }
      }
    }
  } finally {
    await engine.stop();
  }

  // The same lookups on a bare Map, at the smallest and the largest size: how much of a change with size
  // is the machine's (caches, TLB) rather than the engine's.
  const mapLatencies: Latency[] = [];
  if (settings.control) {
    for (const size of [settings.sizes[0]!, largest]) {
      const latency = await measureMapLookups(size, settings.lookups);
      mapLatencies.push(latency);
      console.log(`control: bare Map.get at ${fmt(size)} entries: median ${us(latency.medianNs)} µs, p99 ${us(latency.p99Ns)} µs, mean ${us(latency.meanNs)} µs over ${fmt(latency.lookups)}${others(latency)}`);
      if (latency.misses > 0) problems.push(`${latency.misses} control lookups at ${size} missed`);
    }
  }

  let breakdown: Awaited<ReturnType<typeof heapBreakdown>> | undefined;
  if (settings.breakdown > 0) {
    breakdown = await heapBreakdown(settings.breakdown);
    console.log(`\nheap snapshot diff, ${fmt(settings.breakdown)} idle sessions in a fresh engine: ${fmt(breakdown.totalPerSession)} B per session, by kind (type, then constructor or V8's name):`);
    console.log(table([
      ['kind', 'objects/session', 'bytes/session'],
      ...breakdown.rows.slice(0, 20).map((r) => [r.kind, fmt(r.objectsPerSession, 2), fmt(r.bytesPerSession, 1)]),
    ]));
  }

  const largestSize = sizes.at(-1)!;
  const first = latencies[0];
  const last = latencies.at(-1);
  const memoryMet = largestSize.heapBytesPerSession <= TARGET_BYTES_PER_SESSION;
  const latencyRatio = first !== undefined && last !== undefined && last !== first ? { median: last.medianNs / first.medianNs, p99: last.p99Ns / first.p99Ns } : undefined;
  console.log(`\n== summary (${machine.cpuModel}, ${machine.cores} cores, node ${machine.node})`);
  console.log(`memory: ${fmt(largestSize.heapBytesPerSession)} B heap (${fmt(largestSize.rssBytesPerSession)} B RSS) per idle session at ${fmt(largestSize.sessions)}; target <= ${TARGET_BYTES_PER_SESSION} B: ${memoryMet ? 'met' : `NOT MET (${fmt(largestSize.heapBytesPerSession - TARGET_BYTES_PER_SESSION)} B over, x${(largestSize.heapBytesPerSession / TARGET_BYTES_PER_SESSION).toFixed(2)})`}`);
  if (latencyRatio !== undefined) {
    const unchanged = latencyRatio.median <= UNCHANGED_RATIO && latencyRatio.p99 <= UNCHANGED_RATIO;
    console.log(`lookup at ${fmt(last!.sessions)} vs ${fmt(first!.sessions)}: median x${latencyRatio.median.toFixed(2)}, p99 x${latencyRatio.p99.toFixed(2)} (${unchanged ? `unchanged: within x${UNCHANGED_RATIO}` : `NOT unchanged: more than x${UNCHANGED_RATIO}`})`);
  }
  const mapRatio = mapLatencies.length === 2 ? { median: mapLatencies[1]!.medianNs / mapLatencies[0]!.medianNs, p99: mapLatencies[1]!.p99Ns / mapLatencies[0]!.p99Ns } : undefined;
  if (mapRatio !== undefined) console.log(`control, bare Map.get at ${fmt(largest)} vs ${fmt(settings.sizes[0]!)}: median x${mapRatio.median.toFixed(2)}, p99 x${mapRatio.p99.toFixed(2)}`);
  for (const problem of problems) console.log(`INVALID: ${problem}`);

  writeJson(RESULTS_FILE, {
    machine,
    settings: { ...settings, ip: IP, engine: 'maxSessions = maxConcurrentProcesses = largest size; no init (empty vars); no hooks' },
    target: { bytesPerIdleSession: TARGET_BYTES_PER_SESSION, met: memoryMet },
    sizes, afterLookups, latencies, latencyRatio, mapLatencies, mapRatio, breakdown, problems,
  });
  console.log(`\nresults written to ${fileURLToPath(RESULTS_FILE)}`);
  if (problems.length > 0) process.exitCode = 1;
}

await main();
