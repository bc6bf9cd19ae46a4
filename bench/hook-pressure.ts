// Hook pressure: an onClose that takes 20 ms (an awaited storage write), under churn over HTTP. Does a
// request ever wait for another session's hook, and do closing sessions pile up?
// `npm run bench:hooks` (node --import tsx bench/hook-pressure.ts).
//
//   node --import tsx bench/hook-pressure.ts [--duration 5] [--rounds 5] [--connections 50] [--pipelining 1]
//                                            [--sample-ms 20] [--quick] [--cpu-prof]
//
// Two servers, each `createServer(engine, handler)` from src/adapters/node in its own child process
// pinned to core 0 (this file with --serve, speaking bench/child.ts's IPC protocol), the same engine
// options (maxSessions 100, the default process cap 100) and the same handler as the churn workload of
// bench/server.ts (hits++ in proc.vars, answer it). Only the hook differs:
//   sync:  onClose counts and returns (no promise: the close pipeline arms no deadline timer);
//   20ms:  onClose awaits a 20 ms timer, then counts.
// Load: autocannon in this process, pinned to core 1, 127.0.0.1 only; every request is a newcomer (no
// cookie), so past the cap every request evicts the least recently active idle session and its hook runs.
// Rounds: a discarded warm-up per server, then interleaved rounds whose first server alternates; each
// round's ratio is 20ms req/s ÷ sync req/s, and the median of the ratios is reported (bench/measure.ts,
// bench/report.ts: client-bound and disturbed runs are flagged as in `npm run bench`).
// The server's own CPU time per request (from its snapshots) is printed too: other programs on the
// machine stretch it far less than req/s and latency.
// During each run engine.stats().closingSessions is read over IPC every --sample-ms; its maximum is
// compared with rate × 20 ms, the number of hooks that should be under way at any moment.
// --cpu-prof profiles both servers into bench/results/profiles/hooks-<hook>/ (figures then include the
// profiler's overhead).
// Exit code 1 when a run is invalid (errors, timeouts, non-2xx, server errors) or the counters do not add
// up (evictions and hooks per request); a result beside the expectation is printed, not a failure.

import * as http from 'node:http';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { serveOverIpc } from './child.js';
import { startChild, type ServerChild } from './children.js';
import { buildLibraryForServers, loadCore, loadNodeAdapter } from './library.js';
import { measure } from './measure.js';
import { CLIENT_CORE, pinningUnavailable, pinSelf, SERVER_CORE } from './pinning.js';
import { CHURN_MAX_SESSIONS, type ServerSnapshot } from './protocol.js';
import { CLIENT_BOUND_CPU, DISTURBED_CORES, isDisturbed, machineInfo, median, ratioText, table, writeJson, type Check, type ServerRound } from './report.js';

const RESULTS_FILE = new URL('./results/hook-pressure.json', import.meta.url);
const SELF = fileURLToPath(import.meta.url);
const PROFILE_DIR = fileURLToPath(new URL('./results/profiles', import.meta.url));
const HOOK_MS = 20;
/** The close pipeline adds a little to each hook's 20 ms; twice rate × 20 ms still counts as bounded. */
const BOUND_FACTOR = 2;

type HookKind = 'sync' | '20ms';
const HOOK_KINDS: readonly HookKind[] = ['sync', '20ms'];
const isHookKind = (value: unknown): value is HookKind => HOOK_KINDS.includes(value as HookKind);

// ---- the server, in a child process ----------------------------------------------------------------

async function serve(kind: HookKind): Promise<void> {
  const { SessionEngine } = await loadCore();
  const { createServer } = await loadNodeAdapter();
  let handled = 0;
  let hooks = 0;
  let errors = 0;
  const engine = new SessionEngine<{ hits: number }>({
    maxSessions: CHURN_MAX_SESSIONS,
    init: () => ({ hits: 0 }),
    onClose: kind === 'sync'
      ? () => { hooks++; }
      : async () => {
        await new Promise((resolve) => setTimeout(resolve, HOOK_MS));
        hooks++;
      },
  });
  engine.on('error', () => { errors++; });
  const server: http.Server = createServer(engine, (_req, res, proc) => {
    handled++;
    proc.vars.hits++;
    res.end(String(proc.vars.hits));
  });
  serveOverIpc(server, () => ({ handled, hooks, errors, engine: engine.stats() }));
}

// ---- the parent ------------------------------------------------------------------------------------

interface Settings {
  readonly duration: number;
  readonly rounds: number;
  readonly connections: number;
  readonly pipelining: number;
  readonly sampleMs: number;
  readonly cpuProf: boolean;
}

interface Run {
  readonly round: number;
  readonly hook: HookKind;
  readonly measured: ServerRound;
  /** closingSessions read during the run. */
  readonly closing: { readonly max: number; readonly mean: number; readonly samples: number };
  /** rate × 20 ms: hooks under way at any moment if each took exactly 20 ms. */
  readonly expectedClosing: number;
  readonly evictions: number;
  readonly hooksDone: number;
  /** The server's CPU time per request handled, µs: what a request costs, whatever else runs on the machine. */
  readonly serverCpuPerRequestUs: number;
}

/** Reads closingSessions every `everyMs` until stopped. */
function sampleClosing(server: ServerChild, everyMs: number): { stop(): Promise<{ max: number; mean: number; samples: number }> } {
  let running = true;
  const values: number[] = [];
  const loop = (async () => {
    while (running) {
      const snapshot = await server.snapshot();
      values.push(snapshot.engine?.closingSessions ?? 0);
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { max: values.length > 0 ? Math.max(...values) : 0, mean: values.reduce((a, b) => a + b, 0) / Math.max(1, values.length), samples: values.length };
    },
  };
}

async function measureRun(server: ServerChild, hook: HookKind, round: number, settings: Settings): Promise<Run> {
  const before: ServerSnapshot = await server.snapshot();
  const sampler = sampleClosing(server, settings.sampleMs);
  const measured = await measure(server, { connections: settings.connections, pipelining: settings.pipelining, duration: settings.duration, cookies: undefined });
  const closing = await sampler.stop();
  const after: ServerSnapshot = await server.snapshot();
  return {
    round, hook, measured, closing,
    expectedClosing: measured.client.reqPerSec * (HOOK_MS / 1000),
    evictions: after.engine!.closed.evicted - before.engine!.closed.evicted,
    hooksDone: after.hooks - before.hooks,
    serverCpuPerRequestUs: ((after.cpuMicros - before.cpuMicros) / Math.max(1, after.handled - before.handled)),
  };
}

function runLine(run: Run): string[] {
  const r = run.measured;
  const c = r.client;
  const flags = [c.clientCpu >= CLIENT_BOUND_CPU ? '(client-bound?)' : '', isDisturbed(r) ? '(disturbed)' : '', r.problems.length > 0 ? `INVALID: ${r.problems.join(', ')}` : ''].filter(Boolean).join(' ');
  return [
    String(run.round), run.hook, Math.round(c.reqPerSec).toLocaleString('en-US'), String(c.latencyP50Ms), String(c.latencyP99Ms),
    String(run.closing.max), run.closing.mean.toFixed(1), run.expectedClosing.toFixed(0), run.serverCpuPerRequestUs.toFixed(0),
    `${Math.round(c.clientCpu * 100)}%`, `${Math.round(r.serverCpu * 100)}%`, r.otherCores === undefined ? 'n/a' : `${Math.round(r.otherCores * 100)}%`, flags,
  ];
}

const HEADER = ['round', 'hook', 'req/s', 'p50 ms', 'p99 ms', 'closing max', 'closing mean', 'rate x 20ms', 'server µs/req', 'client CPU', 'server CPU', 'other CPU', ''];

/** Over all measured runs of one server: one eviction per request, and one hook per eviction. */
function checks(hook: HookKind, runs: readonly Run[]): Check[] {
  const requests = runs.reduce((a, r) => a + r.measured.handled, 0);
  const evictions = runs.reduce((a, r) => a + r.evictions, 0);
  const hooks = runs.reduce((a, r) => a + r.hooksDone, 0);
  // 20ms hooks still under way when a run's counters are read finish in the next run (or never counted):
  // allow the closing sessions of one run on top of the 1 %.
  const slack = Math.max(...runs.map((r) => r.closing.max), 0);
  return [
    { name: `${hook}: evictions / requests ≈ 1`, ok: requests > 0 && Math.abs(evictions / requests - 1) < 0.01, detail: `${evictions} / ${requests}` },
    { name: `${hook}: hooks done / evictions ≈ 1`, ok: evictions > 0 && Math.abs(hooks - evictions) <= 0.01 * evictions + slack, detail: `${hooks} / ${evictions}` },
  ];
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      serve: { type: 'string' },
      duration: { type: 'string' },
      rounds: { type: 'string' },
      connections: { type: 'string' },
      pipelining: { type: 'string' },
      'sample-ms': { type: 'string' },
      quick: { type: 'boolean', default: false },
      'cpu-prof': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.serve !== undefined) {
    if (!isHookKind(values.serve) || process.send === undefined) throw new Error('--serve is for the child server started by this script');
    await serve(values.serve);
    return;
  }
  if (values.help) {
    console.log('usage: npm run bench:hooks -- [--duration 5] [--rounds 5] [--connections 50] [--pipelining 1] [--sample-ms 20] [--quick] [--cpu-prof]');
    return;
  }
  const positive = (name: string, text: string | undefined, fallback: number): number => {
    const value = text === undefined ? fallback : Number(text);
    if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number, got ${text}`);
    return value;
  };
  const settings: Settings = {
    duration: positive('duration', values.duration, values.quick ? 2 : 5),
    rounds: Math.round(positive('rounds', values.rounds, values.quick ? 1 : 5)),
    connections: Math.round(positive('connections', values.connections, 50)),
    pipelining: Math.round(positive('pipelining', values.pipelining, 1)),
    sampleMs: positive('sample-ms', values['sample-ms'], 20),
    cpuProf: values['cpu-prof'],
  };

  buildLibraryForServers();
  const machine = machineInfo();
  const unavailable = pinningUnavailable();
  const pinError = unavailable ?? pinSelf(CLIENT_CORE);
  const pinned = pinError === undefined;
  console.log(`machine: ${machine.cpuModel}, ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.platform}, node ${machine.node}, ${machine.date}`);
  console.log(`hook pressure: churn (every request a newcomer, maxSessions ${CHURN_MAX_SESSIONS}: one eviction and one onClose per request); onClose sync vs ${HOOK_MS} ms async`);
  console.log(`load: autocannon, ${settings.connections} connections, pipelining ${settings.pipelining}, warm-up + ${settings.rounds} round(s) of ${settings.duration} s per server, 127.0.0.1; closingSessions sampled every ${settings.sampleMs} ms`);
  if (settings.cpuProf) console.log('PROFILED: both servers run with --cpu-prof; the figures include its overhead');
  console.log(pinned ? `pinning: servers on core ${SERVER_CORE} (taskset -c), load generator on core ${CLIENT_CORE}` : `WARNING: running UNPINNED (${pinError})`);

  const core = pinned ? SERVER_CORE : undefined;
  const nodeFlags = (hook: HookKind): string[] => (settings.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}/hooks-${hook}`] : []);
  const servers: Record<HookKind, ServerChild> = {
    sync: await startChild('ours', 'hooks/sync', [SELF, '--serve', 'sync'], { core, nodeFlags: nodeFlags('sync') }),
    '20ms': await startChild('ours', 'hooks/20ms', [SELF, '--serve', '20ms'], { core, nodeFlags: nodeFlags('20ms') }),
  };
  const runs: Run[] = [];
  try {
    process.stdout.write(`warm-up (${settings.duration} s per server, discarded)…`);
    for (const hook of HOOK_KINDS) {
      const warm = await measureRun(servers[hook], hook, 0, settings);
      if (warm.measured.problems.length > 0) process.stdout.write(` (${hook}: ${warm.measured.problems.join(', ')})`);
    }
    console.log(' done');
    console.log(table([HEADER]));
    for (let round = 1; round <= settings.rounds; round++) {
      const order: readonly HookKind[] = round % 2 === 1 ? HOOK_KINDS : [...HOOK_KINDS].reverse();
      for (const hook of order) {
        const run = await measureRun(servers[hook], hook, round, settings);
        runs.push(run);
        console.log(runLine(run).join('  '));
      }
    }
  } finally {
    await Promise.all([servers.sync.stop(), servers['20ms'].stop()]);
  }

  console.log(`\n${table([HEADER, ...runs.map(runLine)])}`);
  const valid = (hook: HookKind): Run[] => runs.filter((r) => r.hook === hook && r.measured.problems.length === 0);
  const ratios: number[] = [];
  const quietRatios: number[] = [];
  for (let round = 1; round <= settings.rounds; round++) {
    const sync = runs.find((r) => r.round === round && r.hook === 'sync');
    const slow = runs.find((r) => r.round === round && r.hook === '20ms');
    if (sync !== undefined && slow !== undefined && sync.measured.problems.length === 0 && slow.measured.problems.length === 0) {
      const ratio = slow.measured.client.reqPerSec / sync.measured.client.reqPerSec;
      ratios.push(ratio);
      if (!isDisturbed(sync.measured) && !isDisturbed(slow.measured)) quietRatios.push(ratio);
    }
  }
  const perHook = HOOK_KINDS.map((hook) => {
    const v = valid(hook);
    return {
      hook,
      validRuns: v.length,
      reqPerSec: median(v.map((r) => r.measured.client.reqPerSec)),
      p50Ms: median(v.map((r) => r.measured.client.latencyP50Ms)),
      p99Ms: median(v.map((r) => r.measured.client.latencyP99Ms)),
      closingMax: v.length > 0 ? Math.max(...v.map((r) => r.closing.max)) : undefined,
      expectedClosing: median(v.map((r) => r.expectedClosing)),
      serverCpuPerRequestUs: median(v.map((r) => r.serverCpuPerRequestUs)),
    };
  });
  const allChecks = HOOK_KINDS.flatMap((hook) => checks(hook, runs.filter((r) => r.hook === hook)));
  for (const check of allChecks) console.log(`check: ${check.name}: ${check.ok ? 'ok' : 'FAILED'} (${check.detail})`);

  const slow = perHook[1]!;
  const sync = perHook[0]!;
  const boundRatio = slow.closingMax !== undefined && slow.expectedClosing !== undefined ? slow.closingMax / slow.expectedClosing : undefined;
  console.log(`\n== summary (${settings.connections} connections, pipelining ${settings.pipelining}, ${settings.rounds} x ${settings.duration} s, ${pinned ? 'pinned' : 'UNPINNED'}; ${machine.cpuModel}, node ${machine.node}; medians over valid rounds)`);
  console.log(table([
    ['hook', 'valid runs', 'req/s', 'p50 ms', 'p99 ms', 'closing max', 'rate x 20ms', 'server µs/req'],
    ...perHook.map((h) => [h.hook, `${h.validRuns}/${settings.rounds}`, h.reqPerSec === undefined ? 'n/a' : Math.round(h.reqPerSec).toLocaleString('en-US'),
      String(h.p50Ms ?? 'n/a'), String(h.p99Ms ?? 'n/a'), String(h.closingMax ?? 'n/a'), h.expectedClosing === undefined ? 'n/a' : h.expectedClosing.toFixed(0),
      h.serverCpuPerRequestUs === undefined ? 'n/a' : h.serverCpuPerRequestUs.toFixed(0)]),
  ]));
  const ratio = median(ratios);
  console.log(`throughput 20ms / sync: median of ratios ${ratioText(ratio)} (min ${ratioText(ratios.length > 0 ? Math.min(...ratios) : undefined)}, max ${ratioText(ratios.length > 0 ? Math.max(...ratios) : undefined)}); undisturbed rounds only: ${ratioText(median(quietRatios))} (${quietRatios.length} of ${settings.rounds})`);
  console.log(`latency: p50 ${sync.p50Ms ?? 'n/a'} → ${slow.p50Ms ?? 'n/a'} ms, p99 ${sync.p99Ms ?? 'n/a'} → ${slow.p99Ms ?? 'n/a'} ms (a request that waited for another session's ${HOOK_MS} ms hook would take at least ${HOOK_MS} ms)`);
  console.log(`closing sessions (20ms hook): max ${slow.closingMax ?? 'n/a'} vs rate x ${HOOK_MS} ms = ${slow.expectedClosing?.toFixed(0) ?? 'n/a'}: x${boundRatio?.toFixed(2) ?? 'n/a'} (${boundRatio !== undefined && boundRatio <= BOUND_FACTOR ? `bounded: within x${BOUND_FACTOR}` : `NOT within x${BOUND_FACTOR}`})`);

  const noisy = runs.filter((r) => isDisturbed(r.measured));
  if (noisy.length > 0) console.log(`WARNING: other programs used >= ${DISTURBED_CORES * 100}% of a core in ${noisy.length} of ${runs.length} runs: the machine was shared, those figures are noisy`);
  const invalid = runs.filter((r) => r.measured.problems.length > 0);
  writeJson(RESULTS_FILE, {
    machine,
    settings: { ...settings, pinned, hookMs: HOOK_MS, maxSessions: CHURN_MAX_SESSIONS, loadGenerator: 'autocannon' },
    summary: { perHook, ratio20msOverSync: { median: ratio, rounds: ratios, undisturbedMedian: median(quietRatios), undisturbedRounds: quietRatios.length }, closingBoundRatio: boundRatio },
    checks: allChecks,
    runs,
  });
  console.log(`\nresults written to ${fileURLToPath(RESULTS_FILE)}`);
  if (invalid.length > 0 || allChecks.some((c) => !c.ok)) process.exitCode = 1;
}

await main();
