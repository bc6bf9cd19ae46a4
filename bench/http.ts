// `npm run bench`: bare node:http against our createServer, in the same run, rounds interleaved, for
// two workloads (returning visitors, churn). Prints per-round figures, the median of the per-round
// ratios ours/bare and the targets, and writes bench/results/latest.json. A third server, the
// async-context control (node:http running each request in an AsyncLocalStorage.run, nothing else),
// runs in every round: what giving each request an async context costs bare node:http on this Node
// version, and so what sessions add beyond it. The method is in bench/README.md.

import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { DEFAULT_OPTIONS } from '../src/index.js';
import { startServer } from './children.js';
import { createSessions } from './load.js';
import { measure, returningChecks } from './measure.js';
import { startBench } from './pinning.js';
import { CHURN_MAX_SESSIONS, RETURNING_SESSIONS, WORKLOAD_NAMES, isWorkloadName, type ServerKind, type ServerSnapshot, type WorkloadName } from './protocol.js';
import {
  CLIENT_BOUND_CPU, controlRatios, controlValid, DISTURBED_CORES, isDisturbed, LOAD_OPTIONS, median, ratioText, roundHeader, roundLines, summaryTable, writeJson,
  type Check, type RoundPair, type ServerRound, type WorkloadResult,
} from './report.js';

const RESULTS_FILE = new URL('./results/latest.json', import.meta.url);
const PROFILE_DIR = fileURLToPath(new URL('./results/profiles', import.meta.url));

const WORKLOADS: Record<WorkloadName, { title: string; target: number; describe: string }> = {
  returning: {
    title: 'returning visitors',
    target: 0.85,
    describe: `${RETURNING_SESSIONS} sessions pre-created; every request carries one of their cookies and does hits++ in its session`,
  },
  churn: {
    title: 'churn',
    target: 0.7,
    describe: `every request is a newcomer (no cookie); maxSessions ${CHURN_MAX_SESSIONS}, so each one evicts a session and runs its onClose hook`,
  },
};

interface Settings {
  readonly duration: number;
  readonly rounds: number;
  readonly connections: number;
  readonly pipelining: number;
  readonly workloads: readonly WorkloadName[];
  readonly cpuProf: boolean;
}

function readSettings(): Settings {
  const { values } = parseArgs({
    options: {
      ...LOAD_OPTIONS,
      pipelining: { type: 'string', default: '1' },
      workload: { type: 'string' },
      'cpu-prof': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(`usage: npm run bench -- [--duration <s>] [--rounds <n>] [--connections <n>] [--pipelining <n>]
                        [--workload returning|churn] [--quick] [--cpu-prof]
  --quick     1 round of 2 s per server (a smoke check; defaults: 5 rounds of 5 s)
  --cpu-prof  profile every server into bench/results/profiles/<workload>-<server>/ (figures then include profiling overhead)`);
    process.exit(0);
  }
  const positive = (name: string, text: string | undefined, fallback: number): number => {
    const value = text === undefined ? fallback : Number(text);
    if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number, got ${text}`);
    return value;
  };
  const whole = (name: string, text: string | undefined, fallback: number): number => {
    const value = positive(name, text, fallback);
    if (!Number.isInteger(value)) throw new Error(`--${name} must be a whole number, got ${text}`);
    return value;
  };
  if (values.workload !== undefined && !isWorkloadName(values.workload)) throw new Error(`--workload must be one of ${WORKLOAD_NAMES.join(', ')}`);
  const settings: Settings = {
    duration: positive('duration', values.duration, values.quick ? 2 : 5),
    rounds: whole('rounds', values.rounds, values.quick ? 1 : 5),
    connections: whole('connections', values.connections, 50),
    pipelining: whole('pipelining', values.pipelining, 1),
    workloads: values.workload === undefined ? WORKLOAD_NAMES : [values.workload],
    cpuProf: values['cpu-prof'],
  };
  // Each connection needs sessions of its own (see cookieRotation in load.ts).
  if (settings.connections > RETURNING_SESSIONS) throw new Error(`--connections must be at most ${RETURNING_SESSIONS}`);
  return settings;
}

async function runWorkload(name: WorkloadName, settings: Settings, core: number | undefined): Promise<WorkloadResult> {
  const spec = WORKLOADS[name];
  console.log(`\n== ${spec.title}: ${spec.describe}`);
  // Every server is profiled, so the profiles can be compared (profiling slows each a little).
  // --expose-gc: each run ends with a full collection (outside its CPU figure), so its memory is what is live.
  const nodeFlags = (kind: ServerKind): string[] => ['--expose-gc', ...(settings.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}/${name}-${kind}`] : [])];
  const servers = {
    bare: await startServer('bare', name, { core, nodeFlags: nodeFlags('bare') }),
    ours: await startServer('ours', name, { core, nodeFlags: nodeFlags('ours') }),
    control: await startServer('control', name, { core, nodeFlags: nodeFlags('control') }),
  };
  try {
    // Bare and the control get the very same requests (cookie headers included): all three parse the same bytes.
    const cookies = name === 'returning' ? await createSessions(servers.ours.port, RETURNING_SESSIONS, DEFAULT_OPTIONS.cookieName) : undefined;
    const load = { connections: settings.connections, pipelining: settings.pipelining, duration: settings.duration, cookies };

    // Warm-up, discarded: JIT, connection setup and first-use allocations would otherwise land in round 1.
    process.stdout.write(`warm-up (${settings.duration} s per server, discarded)…`);
    const warmups = [await measure(servers.bare, load), await measure(servers.ours, load), await measure(servers.control, load)];
    console.log(' done');
    // Not counted either way, but errors here usually mean the rounds will have them too.
    for (const w of warmups) if (w.problems.length > 0) console.log(`note: warm-up of ${w.kind}: ${w.problems.join(', ')}`);
    const oursAfterWarmup = await servers.ours.snapshot();

    console.log(roundHeader());
    const rounds: RoundPair[] = [];
    for (let round = 1; round <= settings.rounds; round++) {
      // Ours runs between the other two, so both of its ratios (to bare, the target; to the control, what
      // sessions add beyond async context) compare back-to-back runs; bare and the control swap ends
      // between rounds, so a slow drift (thermal, background) does not always favour the same side.
      const order: ('bare' | 'ours' | 'control')[] = round % 2 === 1 ? ['bare', 'ours', 'control'] : ['control', 'ours', 'bare'];
      const measured: Partial<Record<ServerKind, ServerRound>> = {};
      for (const kind of order) measured[kind] = await measure(servers[kind], load);
      const bare = measured.bare!;
      const ours = measured.ours!;
      const pair: RoundPair = {
        round, order, bare, ours, control: measured.control!,
        ratio: ours.client.reqPerSec / bare.client.reqPerSec,
        valid: bare.problems.length === 0 && ours.problems.length === 0,
      };
      rounds.push(pair);
      console.log(roundLines(pair));
    }

    const oursAtEnd = await servers.ours.snapshot();
    const checks = name === 'returning' ? returningChecks(oursAtEnd) : [...churnChecks(oursAfterWarmup, oursAtEnd), memoryCheck(rounds)];
    console.log(`live memory (heap + external) after each round, after a full GC (MiB): bare ${liveSeries(rounds, 'bare')}; ours ${liveSeries(rounds, 'ours')}`);
    for (const check of checks) console.log(`check: ${check.name}: ${check.ok ? 'ok' : 'FAILED'} (${check.detail})`);
    const valid = rounds.filter((p) => p.valid);
    const medianRatio = median(valid.map((p) => p.ratio));
    // On a shared machine a pair can be disturbed on one side only, which no ratio cancels: the median
    // of the undisturbed pairs is shown beside it. The target is judged on all valid rounds.
    const quiet = valid.filter((p) => !isDisturbed(p.bare) && !isDisturbed(p.ours));
    const undisturbed = { medianRatio: median(quiet.map((p) => p.ratio)), rounds: quiet.length };
    const met = medianRatio !== undefined && medianRatio >= spec.target && checks.every((c) => c.ok);
    console.log(`median of ratios ours/bare: ${ratioText(medianRatio)} (target >= ${spec.target.toFixed(2)}x: ${met ? 'met' : 'NOT MET'}); undisturbed rounds only: ${ratioText(undisturbed.medianRatio)} (${quiet.length} of ${rounds.length})`);
    // Over the rounds whose three runs are valid; disturbed ones included, as in the main median.
    const withControl = rounds.filter(controlValid).map(controlRatios).filter((r) => r !== undefined);
    const control = {
      medianControlVsBare: median(withControl.map((r) => r.controlVsBare)),
      medianOursVsControl: median(withControl.map((r) => r.oursVsControl)),
      rounds: withControl.length,
    };
    console.log(`async-context control (node:http with an AsyncLocalStorage.run per request, no sessions): median control/bare ${ratioText(control.medianControlVsBare)}, ours/control ${ratioText(control.medianOursVsControl)} (${control.rounds} rounds)`);
    return { name, title: spec.title, target: spec.target, rounds, medianRatio, undisturbed, control, checks, met };
  } finally {
    await Promise.all([servers.bare.stop(), servers.ours.stop(), servers.control.stop()]);
  }
}

/** Over the measured rounds: one new session, one eviction and one onClose hook per request. */
function churnChecks(start: ServerSnapshot, end: ServerSnapshot): Check[] {
  const requests = end.handled - start.handled;
  const hooks = end.hooks - start.hooks;
  const created = end.engine!.created - start.engine!.created;
  const evicted = end.engine!.closed.evicted - start.engine!.closed.evicted;
  const near = (value: number): boolean => Math.abs(value / requests - 1) < 0.01;
  return [
    { name: 'hooks run / requests ≈ 1', ok: requests > 0 && near(hooks), detail: `${hooks} / ${requests} = ${(hooks / requests).toFixed(4)}` },
    { name: 'sessions created / requests ≈ 1', ok: requests > 0 && near(created), detail: `${created} / ${requests}` },
    { name: 'evictions / requests ≈ 1', ok: requests > 0 && near(evicted), detail: `${evicted} / ${requests}` },
  ];
}

const MIB = 2 ** 20;
/** Live memory may move this much between the first and the last round and still count as flat. */
const FLAT_HEAP_SLACK = { share: 0.1, atLeastBytes: MIB };

const liveSeries = (rounds: readonly RoundPair[], kind: 'bare' | 'ours'): string => rounds.map((p) => (p[kind].liveBytes / MIB).toFixed(1)).join(' ');

/**
 * Memory stays flat under churn: every request creates a session and evicts one, so what is live after a
 * full collection must not grow from round to round (a leak of one closed session per request would add
 * hundreds of MiB over the rounds).
 */
function memoryCheck(rounds: readonly RoundPair[]): Check {
  const first = rounds[0]?.ours.liveBytes;
  const last = rounds[rounds.length - 1]?.ours.liveBytes;
  if (first === undefined || last === undefined) return { name: 'live memory flat over the rounds', ok: false, detail: 'no round' };
  const slack = Math.max(FLAT_HEAP_SLACK.atLeastBytes, first * FLAT_HEAP_SLACK.share);
  const requests = rounds.reduce((sum, p) => sum + p.ours.handled, 0);
  return {
    name: 'live memory flat over the rounds',
    ok: last - first <= slack,
    detail: `${(first / MIB).toFixed(1)} MiB after round 1, ${(last / MIB).toFixed(1)} MiB after round ${rounds.length} (allowed +${(slack / MIB).toFixed(1)} MiB) over ${requests} sessions created and evicted`,
  };
}

/** Names ("churn round 2 ours") of the measured runs that match. */
function runsWhere(results: readonly WorkloadResult[], match: (run: ServerRound) => boolean): string[] {
  return results.flatMap((w) => w.rounds.flatMap((p) => [p.bare, p.ours, ...(p.control === undefined ? [] : [p.control])].filter(match).map((r) => `${w.title} round ${p.round} ${r.kind}`)));
}

async function main(): Promise<void> {
  const settings = readSettings();
  const { machine, pinned, serverCore, warnings } = startBench(`autocannon, ${settings.connections} connections, pipelining ${settings.pipelining}, ${settings.rounds} round(s) of ${settings.duration} s per server after a warm-up, 127.0.0.1`);

  const results: WorkloadResult[] = [];
  for (const name of settings.workloads) results.push(await runWorkload(name, settings, serverCore));

  const clientBound = runsWhere(results, (r) => r.client.clientCpu >= CLIENT_BOUND_CPU);
  if (clientBound.length > 0) {
    warnings.push(`load generator at >= ${CLIENT_BOUND_CPU * 100}% of its core in ${clientBound.length} run(s) (${clientBound.join('; ')}): those figures may be client-bound, the server could be faster than shown`);
  }
  const disturbed = runsWhere(results, isDisturbed);
  if (disturbed.length > 0) {
    warnings.push(`other programs used >= ${DISTURBED_CORES * 100}% of a core in ${disturbed.length} run(s) (${disturbed.join('; ')}): the machine was shared, those figures are noisy`);
  }
  const invalid = results.flatMap((w) => w.rounds.filter((p) => !p.valid).map((p) => `${w.title} round ${p.round}`));
  if (invalid.length > 0) warnings.push(`invalid rounds (errors or non-2xx), left out of the medians: ${invalid.join('; ')}`);
  // A control run with errors leaves its round's ours/bare ratio standing, not the control's ratios.
  const invalidControls = results.flatMap((w) => w.rounds.filter((p) => p.valid && !controlValid(p)).map((p) => `${w.title} round ${p.round}`));
  if (invalidControls.length > 0) warnings.push(`invalid control runs (errors or non-2xx), left out of the control medians: ${invalidControls.join('; ')}`);

  console.log(`\n== summary (${settings.connections} connections, pipelining ${settings.pipelining}, ${settings.rounds} x ${settings.duration} s, ${pinned ? 'pinned' : 'UNPINNED'}; ${machine.cpuModel}, node ${machine.node})`);
  console.log(summaryTable(results));
  for (const warning of warnings) console.log(`WARNING: ${warning}`);

  writeJson(RESULTS_FILE, { machine, settings: { ...settings, pinned, loadGenerator: 'autocannon' }, warnings, workloads: results });
  console.log(`\nresults written to ${fileURLToPath(RESULTS_FILE)}`);
  // A round with errors is not a measurement: fail so a script notices. A missed target is a result, not a failure.
  if (invalid.length > 0 || invalidControls.length > 0 || results.some((w) => w.checks.some((c) => !c.ok))) process.exitCode = 1;
}

await main();
