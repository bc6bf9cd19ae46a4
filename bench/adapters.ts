// `node --import tsx bench/adapters.ts`: each framework adapter against the same framework without
// sessions (node:http, Express, Fastify, Hono), returning visitors with cookies, rounds interleaved.
// Prints per-round figures, the median of the per-round ratios with/without per framework and the
// target (>= 0.85x: the session layer costs at most 15 % of the framework's own throughput), and writes
// bench/results/adapters.json. The method is in bench/README.md ("Adapters").

import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { DEFAULT_OPTIONS } from '../src/index.js';
import { startChild, type ServerChild } from './children.js';
import { createSessions } from './load.js';
import { deleteBenchKeys } from './redis-keys.js';
import { measure, returningChecks, type Partner } from './measure.js';
import { startBench } from './pinning.js';
import { Redis } from 'ioredis';
import { BENCH_REDIS_URL, FRAMEWORK_NAMES, isFrameworkName, RETURNING_SESSIONS, type FrameworkName, type ServerKind } from './protocol.js';
import {
  CLIENT_BOUND_CPU, isDisturbed, LOAD_OPTIONS, median, ratioText, roundHeader, roundLines, table, wholeOption, writeJson,
  type Check, type RoundPair, type ServerRound,
} from './report.js';

const RESULTS_FILE = new URL('./results/adapters.json', import.meta.url);
/** The Redis run has its own file: it answers another question (the cost of sharing sessions between nodes). */
const REDIS_RESULTS_FILE = new URL('./results/redis.json', import.meta.url);
const SERVER_SCRIPT = fileURLToPath(new URL('./adapter-server.ts', import.meta.url));
const TARGETS: Record<FrameworkName, number> = { node: 0.85, express: 0.85, fastify: 0.85, hono: 0.85, redis: 0.5, 'hono-middleware': 0.85, 'node-als': 0.85 };
const TITLES: Record<FrameworkName, string> = { node: 'node:http', express: 'Express', fastify: 'Fastify', hono: 'Hono (node-server)', redis: 'node:http, sessions in Redis', 'hono-middleware': 'Hono, bare with a no-op middleware', 'node-als': 'node:http, bare with AsyncLocalStorage.run per request' };

interface Settings {
  readonly duration: number;
  readonly rounds: number;
  /** > 0: sessions carry this many bytes more and only one request in ten writes (read-mostly, large state). */
  readonly stateBytes: number;
  readonly connections: number;
  readonly pipelining: number;
  readonly frameworks: readonly FrameworkName[];
}

interface FrameworkResult {
  readonly name: FrameworkName;
  readonly title: string;
  readonly rounds: readonly RoundPair[];
  readonly bareReqPerSec: number | undefined;
  readonly oursReqPerSec: number | undefined;
  readonly medianRatio: number | undefined;
  readonly undisturbed: { readonly medianRatio: number | undefined; readonly rounds: number };
  readonly checks: readonly Check[];
  readonly met: boolean;
  /** 'redis' only: Redis round trips and commands (scripts' inner calls included) per request over the measured rounds. */
  readonly redis?: {
    readonly roundTripsPerRequest: number;
    readonly commandsPerRequest: number;
    /** Redis's own CPU (user + system) per request, µs, and the part of it spent inside scripts. */
    readonly redisCpuMicrosPerRequest: number;
    readonly scriptMicrosPerRequest: number;
    /** The server's CPU per request, µs: with its sessions in Redis, and bare. */
    readonly serverCpuMicrosPerRequest: number;
    readonly bareCpuMicrosPerRequest: number;
  };
}

function readSettings(): Settings {
  const { values } = parseArgs({
    options: {
      ...LOAD_OPTIONS,
      pipelining: { type: 'string', default: '1' },
      framework: { type: 'string', multiple: true },
      redis: { type: 'boolean', default: false },
      'state-bytes': { type: 'string' },
    },
  });
  const frameworks = values.framework ?? (values.redis ? ['redis'] : FRAMEWORK_NAMES);
  for (const f of frameworks) if (!isFrameworkName(f)) throw new Error(`--framework must be one of ${[...FRAMEWORK_NAMES, 'redis', 'node-als', 'hono-middleware'].join(', ')}, got ${f}`);
  const settings: Settings = {
    duration: wholeOption('duration', values.duration, values.quick ? 2 : 5),
    rounds: wholeOption('rounds', values.rounds, values.quick ? 1 : 5),
    connections: wholeOption('connections', values.connections, 50),
    pipelining: wholeOption('pipelining', values.pipelining, 1),
    frameworks: frameworks as FrameworkName[],
    stateBytes: values['state-bytes'] === undefined ? 0 : wholeOption('state-bytes', values['state-bytes'], 0),
  };
  // Each connection needs sessions of its own (see cookieRotation in load.ts).
  if (settings.connections > RETURNING_SESSIONS) throw new Error(`--connections must be at most ${RETURNING_SESSIONS}`);
  return settings;
}

async function runFramework(name: FrameworkName, settings: Settings, core: number | undefined): Promise<FrameworkResult> {
  const title = TITLES[name];
  const state = settings.stateBytes > 0 ? `, ${settings.stateBytes}-byte state, one request in ten writes` : '';
  console.log(`\n== ${title}: without sessions (bare) vs with sessions (ours); ${RETURNING_SESSIONS} returning visitors${state}`);
  const start = (kind: ServerKind): Promise<ServerChild> => startChild(kind, `${name}/${kind}`, [SERVER_SCRIPT, name, kind, String(settings.stateBytes)], { core, nodeFlags: [] });
  const servers = { bare: await start('bare'), ours: await start('ours') };
  try {
    // The bare server gets the very same requests (cookie headers included) so both parse the same bytes.
    const cookies = await createSessions(servers.ours.port, RETURNING_SESSIONS, DEFAULT_OPTIONS.cookieName);
    const load = { connections: settings.connections, pipelining: settings.pipelining, duration: settings.duration, cookies };

    process.stdout.write(`warm-up (${settings.duration} s per server, discarded)…`);
    const warmups = [await measure(servers.bare, load), await measure(servers.ours, load)];
    console.log(' done');
    for (const w of warmups) if (w.problems.length > 0) console.log(`note: warm-up of ${w.kind}: ${w.problems.join(', ')}`);

    console.log(roundHeader());
    const redisBefore = name === 'redis' ? { stats: await redisCommandStats(), handled: (await servers.ours.snapshot()).handled } : undefined;
    const partner: Partner | undefined = name === 'redis' ? { name: 'Redis', cpuSeconds: async () => (await redisCommandStats()).cpuMicros / 1e6 } : undefined;
    const rounds: RoundPair[] = [];
    for (let round = 1; round <= settings.rounds; round++) {
      // Alternating which side goes first keeps a slow drift from always favouring the same one.
      const order: ('bare' | 'ours')[] = round % 2 === 1 ? ['bare', 'ours'] : ['ours', 'bare'];
      const measured = new Map<ServerKind, ServerRound>();
      // Redis's CPU during the run with sessions in it is the system's own, not a disturbance.
      for (const kind of order) measured.set(kind, await measure(servers[kind], load, kind === 'ours' ? partner : undefined));
      const bare = measured.get('bare')!;
      const ours = measured.get('ours')!;
      const pair: RoundPair = { round, order, bare, ours, ratio: ours.client.reqPerSec / bare.client.reqPerSec, valid: bare.problems.length === 0 && ours.problems.length === 0 };
      rounds.push(pair);
      console.log(roundLines(pair));
    }

    const finalSnapshot = await servers.ours.snapshot();
    let redis: FrameworkResult['redis'];
    if (redisBefore !== undefined) {
      const after = await redisCommandStats();
      const requests = finalSnapshot.handled - redisBefore.handled;
      const per = (field: keyof RedisCounters): number => (after[field] - redisBefore.stats[field]) / requests;
      redis = {
        roundTripsPerRequest: per('roundTrips'), commandsPerRequest: per('commands'),
        redisCpuMicrosPerRequest: per('cpuMicros'), scriptMicrosPerRequest: per('scriptMicros'),
        serverCpuMicrosPerRequest: serverMicrosPerRequest(rounds.map((p) => p.ours)), bareCpuMicrosPerRequest: serverMicrosPerRequest(rounds.map((p) => p.bare)),
      };
      console.log(`redis: ${redis.roundTripsPerRequest.toFixed(2)} round trips and ${redis.commandsPerRequest.toFixed(1)} commands (inside scripts included) per request`);
      // Redis shares the machine: what it spends per request bounds the rate whatever the node does.
      console.log(`cpu per request: bare server ${redis.bareCpuMicrosPerRequest.toFixed(1)} µs; with Redis: server ${redis.serverCpuMicrosPerRequest.toFixed(1)} µs + Redis ${redis.redisCpuMicrosPerRequest.toFixed(1)} µs (${redis.scriptMicrosPerRequest.toFixed(1)} µs inside scripts)`);
    }
    const checks = returningChecks(finalSnapshot);
    for (const check of checks) console.log(`check: ${check.name}: ${check.ok ? 'ok' : 'FAILED'} (${check.detail})`);
    const valid = rounds.filter((p) => p.valid);
    const quiet = valid.filter((p) => !isDisturbed(p.bare) && !isDisturbed(p.ours));
    const medianRatio = median(valid.map((p) => p.ratio));
    const target = TARGETS[name];
    const met = medianRatio !== undefined && medianRatio >= target && checks.every((c) => c.ok);
    console.log(`median of ratios with/without sessions: ${ratioText(medianRatio)} (target >= ${target.toFixed(2)}x: ${met ? 'met' : 'NOT MET'})`);
    return {
      name, title, rounds, checks, met, medianRatio, ...(redis === undefined ? {} : { redis }),
      bareReqPerSec: median(valid.map((p) => p.bare.client.reqPerSec)),
      oursReqPerSec: median(valid.map((p) => p.ours.client.reqPerSec)),
      undisturbed: { medianRatio: median(quiet.map((p) => p.ratio)), rounds: quiet.length },
    };
  } finally {
    await Promise.all([servers.bare.stop(), servers.ours.stop()]);
    if (name === 'redis') await deleteBenchKeys();
  }
}

/**
 * Redis-wide counters: script calls (one round trip each) and every command run, from INFO commandstats;
 * the time spent inside scripts (their inner commands included) and Redis's own CPU time (user + system,
 * INFO cpu), microseconds.
 */
async function redisCommandStats(): Promise<RedisCounters> {
  const client = new Redis(BENCH_REDIS_URL);
  try {
    const info = `${await client.info('commandstats')}\n${await client.info('cpu')}`;
    let roundTrips = 0;
    let commands = 0;
    let scriptMicros = 0;
    for (const [, name, calls, usec] of info.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
      commands += Number(calls);
      if (name === 'evalsha' || name === 'eval') {
        roundTrips += Number(calls);
        scriptMicros += Number(usec);
      }
    }
    const seconds = (field: string): number => Number(new RegExp(`^${field}:([\\d.]+)`, 'm').exec(info)?.[1] ?? Number.NaN);
    // The INFO call itself and this client's connection are counted too: a handful over thousands of requests.
    return { roundTrips, commands, scriptMicros, cpuMicros: (seconds('used_cpu_user') + seconds('used_cpu_sys')) * 1e6 };
  } finally {
    client.disconnect();
  }
}

interface RedisCounters {
  readonly roundTrips: number;
  readonly commands: number;
  readonly scriptMicros: number;
  readonly cpuMicros: number;
}

/** Server CPU per request over some rounds of one side, microseconds. */
function serverMicrosPerRequest(rounds: readonly ServerRound[]): number {
  const cpuMicros = rounds.reduce((sum, r) => sum + r.serverCpu * r.client.wallSeconds * 1e6, 0);
  return cpuMicros / rounds.reduce((sum, r) => sum + r.handled, 0);
}

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const perSecond = (value: number | undefined): string => (value === undefined ? 'n/a' : integer.format(value));
const cost = (ratio: number | undefined): string => (ratio === undefined ? 'n/a' : `${Math.round((1 - ratio) * 100)} %`);

function summary(results: readonly FrameworkResult[]): string {
  const rows = [['framework', 'req/s without', 'req/s with', 'median with/without', 'min', 'max', 'session cost', 'undisturbed median', 'result']];
  for (const r of results) {
    const ratios = r.rounds.filter((p) => p.valid).map((p) => p.ratio);
    rows.push([
      r.title, perSecond(r.bareReqPerSec), perSecond(r.oursReqPerSec), ratioText(r.medianRatio),
      ratioText(ratios.length > 0 ? Math.min(...ratios) : undefined), ratioText(ratios.length > 0 ? Math.max(...ratios) : undefined),
      cost(r.medianRatio), `${ratioText(r.undisturbed.medianRatio)} (${r.undisturbed.rounds}/${r.rounds.length})`,
      r.met ? 'met' : r.checks.every((c) => c.ok) ? 'NOT MET' : 'NOT MET (checks failed)',
    ]);
  }
  return table(rows);
}

async function main(): Promise<void> {
  const settings = readSettings();
  const { machine, pinned, serverCore, warnings } = startBench(`autocannon, ${settings.connections} connections, pipelining ${settings.pipelining}, ${settings.rounds} round(s) of ${settings.duration} s per server after a warm-up, 127.0.0.1, ${RETURNING_SESSIONS} cookies`);

  const results: FrameworkResult[] = [];
  for (const name of settings.frameworks) results.push(await runFramework(name, settings, serverCore));

  const runs = results.flatMap((r) => r.rounds.flatMap((p) => [p.bare, p.ours].map((run) => ({ run, name: `${r.title} round ${p.round} ${run.kind}` }))));
  const clientBound = runs.filter(({ run }) => run.client.clientCpu >= CLIENT_BOUND_CPU).map(({ name }) => name);
  if (clientBound.length > 0) warnings.push(`load generator at >= ${CLIENT_BOUND_CPU * 100}% of its core in ${clientBound.length} run(s) (${clientBound.join('; ')}): those may be client-bound`);
  const disturbed = runs.filter(({ run }) => isDisturbed(run)).map(({ name }) => name);
  if (disturbed.length > 0) warnings.push(`other programs used CPU during ${disturbed.length} run(s) (${disturbed.join('; ')}): noisy figures`);
  const invalid = results.flatMap((r) => r.rounds.filter((p) => !p.valid).map((p) => `${r.title} round ${p.round}`));
  if (invalid.length > 0) warnings.push(`invalid rounds (errors or non-2xx), left out of the medians: ${invalid.join('; ')}`);

  console.log(`\n== summary: returning visitors, ${settings.connections} connections, pipelining ${settings.pipelining}, ${settings.rounds} x ${settings.duration} s, ${pinned ? 'pinned' : 'UNPINNED'}; targets: ${settings.frameworks.map((f) => `${f} >= ${TARGETS[f].toFixed(2)}x`).join(', ')}; ${machine.cpuModel}, node ${machine.node}`);
  console.log(summary(results));
  for (const warning of warnings) console.log(`WARNING: ${warning}`);

  const onlyRedis = settings.frameworks.every((f) => f === 'redis');
  const resultsFile = settings.stateBytes > 0
    ? new URL(`./results/${onlyRedis ? 'redis' : 'adapters'}-state-${settings.stateBytes}.json`, import.meta.url)
    : onlyRedis ? REDIS_RESULTS_FILE : RESULTS_FILE;
  writeJson(resultsFile, { machine, settings: { ...settings, pinned, loadGenerator: 'autocannon', targets: TARGETS }, warnings, frameworks: results });
  console.log(`\nresults written to ${fileURLToPath(resultsFile)}`);
  // A round with errors is not a measurement: fail so a script notices. A missed target is a result, not a failure.
  if (invalid.length > 0 || results.some((r) => r.checks.some((c) => !c.ok))) process.exitCode = 1;
}

await main();
