// `npm run bench:instructions [-- --framework node|express|fastify|hono|redis …]`: what a request costs
// in CPU instructions, with and without sessions, counted by valgrind's callgrind. Instruction counts do
// not depend on what else the machine runs (a busy or shared machine makes req/s figures drift by tens of
// percent; these repeat within a few percent), so they show what a change to the hot path buys where a
// timed run cannot. They are not time: a cache miss or a system call costs far more than its
// instructions, so req/s (`npm run bench`) stays the figure the targets are about. Method: bench/README.md.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DEFAULT_OPTIONS } from '../src/index.js';
import { startChild, type ServerChild } from './children.js';
import { createSessions, runLoad } from './load.js';
import { buildLibraryForServers, libraryBuild } from './library.js';
import { deleteBenchKeys } from './redis-keys.js';
import { FRAMEWORK_NAMES, isFrameworkName, RETURNING_SESSIONS, type FrameworkName, type ServerKind } from './protocol.js';
import { writeJson } from './report.js';

const SERVER_SCRIPT = fileURLToPath(new URL('./adapter-server.ts', import.meta.url));
const RESULTS_FILE = new URL('./results/instructions.json', import.meta.url);

interface Settings {
  readonly frameworks: readonly FrameworkName[];
  /** Requests before counting starts: the JIT has settled by then (the first windows after fewer vary by 30 % and more). */
  readonly warmup: number;
  /** Requests per counted window. */
  readonly requests: number;
  readonly windows: number;
  /**
   * Keep-alive connections of the load. Under valgrind a server runs some 50 times slower: 20 are plenty
   * to keep it busy. 1 makes each request one turn of the event loop in both servers, so a count depends
   * less on how many requests one wake-up handles (which differs between two servers on a loaded machine).
   */
  readonly connections: number;
}

interface ServerCount {
  readonly kind: ServerKind;
  /** Instructions per request in each window. */
  readonly windows: readonly number[];
  /**
   * The fewest: what else a window holds only adds (a major GC, the JIT compiling on another thread, both
   * counted), so the least loaded window is the closest to what the request path itself costs.
   */
  readonly least: number;
}

function readSettings(): Settings {
  const { values } = parseArgs({
    options: {
      framework: { type: 'string', multiple: true },
      warmup: { type: 'string', default: '25000' },
      requests: { type: 'string', default: '3000' },
      windows: { type: 'string', default: '5' },
      connections: { type: 'string', default: '20' },
    },
  });
  const whole = (name: string, text: string): number => {
    const value = Number(text);
    if (!Number.isInteger(value) || value <= 0) throw new Error(`--${name} must be a whole number > 0, got ${text}`);
    return value;
  };
  const frameworks = values.framework ?? ['node'];
  for (const f of frameworks) if (!isFrameworkName(f)) throw new Error(`--framework must be one of ${[...FRAMEWORK_NAMES, 'redis', 'node-als', 'hono-middleware'].join(', ')}, got ${f}`);
  return { frameworks: frameworks as FrameworkName[], warmup: whole('warmup', values.warmup), requests: whole('requests', values.requests), windows: whole('windows', values.windows), connections: whole('connections', values.connections) };
}

function valgrindMissing(): string | undefined {
  try {
    execFileSync('valgrind', ['--version'], { stdio: 'ignore' });
    execFileSync('callgrind_control', ['--version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'valgrind (with callgrind_control) is not installed: apt-get install -y valgrind';
  }
}

/** Counts one server: warm-up, then `windows` windows of `requests` requests, each between a zero and a dump of the counters. */
async function countServer(server: ServerChild, dumps: string, cookies: readonly string[], settings: Settings): Promise<ServerCount> {
  const load = { port: server.port, connections: settings.connections, pipelining: 1, duration: 0, cookies };
  await runLoad({ ...load, amount: settings.warmup });
  const windows: number[] = [];
  for (let w = 0; w < settings.windows; w++) {
    execFileSync('callgrind_control', ['--zero', String(server.pid)], { stdio: 'ignore' });
    const before = await server.snapshot();
    const measured = await runLoad({ ...load, amount: settings.requests });
    execFileSync('callgrind_control', ['--dump', String(server.pid)], { stdio: 'ignore' });
    const after = await server.snapshot();
    const problems = measured.errors + measured.timeouts + measured.non2xx + (after.errors - before.errors);
    if (problems > 0) throw new Error(`${server.kind}: ${problems} failed requests in a counted window`);
    windows.push(lastDumpInstructions(dumps, server.pid) / (after.handled - before.handled));
  }
  return { kind: server.kind, windows, least: Math.min(...windows) };
}

/** The instructions in the newest dump of `pid` (callgrind names them <file>.<pid>.<n>, n counting up). */
function lastDumpInstructions(dumps: string, pid: number): number {
  const prefix = `callgrind.out.${pid}.`;
  const newest = readdirSync(dumps).filter((f) => f.startsWith(prefix)).sort((a, b) => Number(a.slice(prefix.length)) - Number(b.slice(prefix.length))).pop();
  if (newest === undefined) throw new Error(`no callgrind dump for ${pid} in ${dumps}`);
  const totals = readFileSync(join(dumps, newest), 'utf8').split('\n').find((line) => line.startsWith('summary:') || line.startsWith('totals:'));
  if (totals === undefined) throw new Error(`${newest} has no totals line`);
  return Number(totals.split(/\s+/)[1]);
}

async function countFramework(name: FrameworkName, settings: Settings, dumps: string): Promise<{ bare: ServerCount; ours: ServerCount }> {
  const wrapper = ['valgrind', '--quiet', '--tool=callgrind', '--smc-check=all-non-file', `--callgrind-out-file=${dumps}/callgrind.out.%p`];
  const start = (kind: ServerKind): Promise<ServerChild> => startChild(kind, `${name}/${kind}`, [SERVER_SCRIPT, name, kind], { core: undefined, nodeFlags: [], wrapper, startTimeoutMs: 300_000 });
  const servers = { bare: await start('bare'), ours: await start('ours') };
  try {
    // The bare server gets the very same requests (cookie headers included), as in bench/adapters.ts.
    const cookies = await createSessions(servers.ours.port, RETURNING_SESSIONS, DEFAULT_OPTIONS.cookieName);
    // Both at once: each valgrind runs on one core, and instruction counts do not mind the other.
    const [bare, ours] = await Promise.all([countServer(servers.bare, dumps, cookies, settings), countServer(servers.ours, dumps, cookies, settings)]);
    return { bare, ours };
  } finally {
    await Promise.all([servers.bare.stop(), servers.ours.stop()]);
    if (name === 'redis') await deleteBenchKeys();
  }
}

const settings = readSettings();
const missing = valgrindMissing();
if (missing !== undefined) {
  console.error(missing);
  process.exit(1);
}
buildLibraryForServers();
const dumps = mkdtempSync(join(tmpdir(), 'lws-callgrind-'));
const results: Record<string, unknown>[] = [];
try {
  console.log(`instructions per request (callgrind), ${RETURNING_SESSIONS} returning visitors, ${settings.connections} connection(s); ${settings.warmup} requests of warm-up, then ${settings.windows} windows of ${settings.requests}; node ${process.version}; library ${libraryBuild()}`);
  console.log('framework   bare Ir/req  with sessions Ir/req  sessions add  bare/with (each window, fewest taken: bare | with)');
  for (const name of settings.frameworks) {
    const { bare, ours } = await countFramework(name, settings, dumps);
    const k = (n: number): string => `${(n / 1000).toFixed(1)}k`;
    console.log(`${name.padEnd(10)}  ${k(bare.least).padStart(11)}  ${k(ours.least).padStart(20)}  ${k(ours.least - bare.least).padStart(12)}  ${(bare.least / ours.least).toFixed(3)}x (${bare.windows.map(k).join(' ')} | ${ours.windows.map(k).join(' ')})`);
    results.push({ framework: name, bareInstructionsPerRequest: bare.least, oursInstructionsPerRequest: ours.least, bareWindows: bare.windows, oursWindows: ours.windows });
  }
  writeJson(RESULTS_FILE, { settings, library: libraryBuild(), node: process.version, date: new Date().toISOString(), results });
} finally {
  rmSync(dumps, { recursive: true, force: true });
}
