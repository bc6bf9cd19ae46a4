// `npm run bench:peers`: returning visitors on our sessions and on the session libraries a user would
// pick instead, in one run, rounds interleaved: bare node:http, node:http with only an async context per
// request (AsyncLocalStorage.run, what ours runs each handler in), and ours; Express bare, with ours and with
// express-session (MemoryStore); Fastify bare, with ours and with @fastify/session (its memory store).
// Each server's req/s is compared with bare node:http's and with its own framework's without sessions,
// in the same round; the figure is the median of those per-round ratios. Writes bench/results/peers.json.
// The method is in bench/README.md ("Peers").

import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DEFAULT_OPTIONS } from '../src/index.js';
import { startChild, type ServerChild } from './children.js';
import { createSessions } from './load.js';
import { measure, returningChecks } from './measure.js';
import { startBench } from './pinning.js';
import { RETURNING_SESSIONS, type ServerKind, type ServerSnapshot } from './protocol.js';
import { CLIENT_BOUND_CPU, isDisturbed, LOAD_OPTIONS, median, ratioText, table, wholeOption, writeJson, type Check, type ServerRound } from './report.js';

const RESULTS_FILE = new URL('./results/peers.json', import.meta.url);
const SERVER_SCRIPT = fileURLToPath(new URL('./adapter-server.ts', import.meta.url));
/** The target of the session layer on node:http (DESIGN.md §5); the peers are measured for reference. */
const TARGET = 0.85;

type Framework = 'node' | 'node-als' | 'express' | 'fastify';

interface Variant {
  readonly framework: Framework;
  readonly kind: ServerKind;
  readonly title: string;
  /** The session cookie the server sets; undefined for the bare servers (they get ours, read by nobody). */
  readonly cookieName: string | undefined;
}

const VARIANTS: readonly Variant[] = [
  { framework: 'node', kind: 'bare', title: 'node:http', cookieName: undefined },
  { framework: 'node', kind: 'ours', title: 'node:http + legacy-web-sessions', cookieName: DEFAULT_OPTIONS.cookieName },
  // The async context every request of ours runs in, alone: what any library offering one costs on this Node.
  { framework: 'node-als', kind: 'bare', title: 'node:http, each request in AsyncLocalStorage.run', cookieName: undefined },
  { framework: 'express', kind: 'bare', title: 'Express', cookieName: undefined },
  { framework: 'express', kind: 'ours', title: 'Express + legacy-web-sessions', cookieName: DEFAULT_OPTIONS.cookieName },
  { framework: 'express', kind: 'peer', title: 'Express + express-session (MemoryStore)', cookieName: 'connect.sid' },
  { framework: 'fastify', kind: 'bare', title: 'Fastify', cookieName: undefined },
  { framework: 'fastify', kind: 'ours', title: 'Fastify + legacy-web-sessions', cookieName: DEFAULT_OPTIONS.cookieName },
  { framework: 'fastify', kind: 'peer', title: 'Fastify + @fastify/session (memory store)', cookieName: 'sessionId' },
];
const REFERENCE = 0;
const idOf = (v: Variant): string => `${v.framework}/${v.kind}`;

interface Settings {
  readonly duration: number;
  readonly rounds: number;
  readonly connections: number;
}

/** One round: every server once, in the round's order. */
interface Round {
  readonly round: number;
  readonly order: readonly string[];
  readonly runs: Readonly<Record<string, ServerRound>>;
}

interface VariantResult {
  readonly id: string;
  readonly title: string;
  readonly reqPerSec: number | undefined;
  /** Median over rounds of (this server's req/s ÷ bare node:http's in the same round), with min and max. */
  readonly vsNode: { readonly median: number | undefined; readonly min: number | undefined; readonly max: number | undefined };
  /** The same against its own framework without sessions. */
  readonly vsFramework: number | undefined;
}

function readSettings(): Settings {
  const { values } = parseArgs({
    options: LOAD_OPTIONS,
  });
  const settings = {
    duration: wholeOption('duration', values.duration, values.quick ? 2 : 5),
    rounds: wholeOption('rounds', values.rounds, values.quick ? 1 : 5),
    connections: wholeOption('connections', values.connections, 50),
  };
  // Each connection needs sessions of its own (see cookieRotation in load.ts).
  if (settings.connections > RETURNING_SESSIONS) throw new Error(`--connections must be at most ${RETURNING_SESSIONS}`);
  return settings;
}

/**
 * Round r runs the servers rotated by r - 1, backwards every other round: each server goes early in
 * some rounds and late in others, so a slow drift of the machine favours none.
 */
function roundOrder(round: number): Variant[] {
  const shift = (round - 1) % VARIANTS.length;
  const rotated = [...VARIANTS.slice(shift), ...VARIANTS.slice(0, shift)];
  return round % 2 === 0 ? rotated.reverse() : rotated;
}

/** Every measured request was a returning visitor: no session created after the 1,000 made beforehand. */
function checksOf(variant: Variant, end: ServerSnapshot): Check[] {
  if (variant.kind === 'ours') return returningChecks(end).map((c) => ({ ...c, name: `${idOf(variant)}: ${c.name}` }));
  if (variant.kind === 'peer') {
    const created = end.peerSessionsCreated ?? 0;
    return [{ name: `${idOf(variant)}: exactly ${RETURNING_SESSIONS} sessions, all created before the load`, ok: created === RETURNING_SESSIONS, detail: `created ${created}` }];
  }
  return [];
}

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const percent = (share: number): string => `${Math.round(share * 100)}%`;

function runLine(round: Round, id: string, index: number): string[] {
  const run = round.runs[id]!;
  const reference = round.runs[idOf(VARIANTS[REFERENCE]!)]!;
  const flags = [
    run.client.clientCpu >= CLIENT_BOUND_CPU ? 'client-bound?' : '',
    isDisturbed(run) ? 'disturbed' : '',
    run.problems.length > 0 ? `INVALID: ${run.problems.join(', ')}` : '',
  ].filter((f) => f !== '').join(', ');
  return [
    index === 0 ? String(round.round) : '', id, integer.format(run.client.reqPerSec), String(run.client.latencyP50Ms), String(run.client.latencyP99Ms),
    percent(run.client.clientCpu), percent(run.serverCpu), run.otherCores === undefined ? 'n/a' : percent(run.otherCores),
    ratioText(run.client.reqPerSec / reference.client.reqPerSec), flags,
  ];
}

/** Median, min and max over the rounds where both runs are valid of (a's req/s ÷ b's). */
function ratios(rounds: readonly Round[], a: string, b: string): { median: number | undefined; min: number | undefined; max: number | undefined } {
  const values = rounds
    .filter((r) => r.runs[a]!.problems.length === 0 && r.runs[b]!.problems.length === 0)
    .map((r) => r.runs[a]!.client.reqPerSec / r.runs[b]!.client.reqPerSec);
  return { median: median(values), min: values.length > 0 ? Math.min(...values) : undefined, max: values.length > 0 ? Math.max(...values) : undefined };
}

async function main(): Promise<void> {
  const settings = readSettings();
  const { machine, pinned, serverCore: core, warnings } = startBench(`autocannon, ${settings.connections} connections, pipelining 1, ${settings.rounds} round(s) of ${settings.duration} s per server after a warm-up, 127.0.0.1, ${RETURNING_SESSIONS} returning visitors per server`);

  const servers = new Map<string, ServerChild>();
  try {
    for (const v of VARIANTS) servers.set(idOf(v), await startChild(v.kind, idOf(v), [SERVER_SCRIPT, v.framework, v.kind], { core, nodeFlags: ['--expose-gc'] }));
    // Each server with sessions gets 1,000 of its own; the bare ones get node:http-with-ours's cookies,
    // so every server parses a Cookie header of about the same size.
    const cookies = new Map<string, readonly string[]>();
    for (const v of VARIANTS) if (v.cookieName !== undefined) cookies.set(idOf(v), await createSessions(servers.get(idOf(v))!.port, RETURNING_SESSIONS, v.cookieName));
    const cookiesOf = (v: Variant): readonly string[] => cookies.get(idOf(v)) ?? cookies.get('node/ours')!;
    const load = (v: Variant): { connections: number; pipelining: number; duration: number; cookies: readonly string[] } => ({ connections: settings.connections, pipelining: 1, duration: settings.duration, cookies: cookiesOf(v) });

    process.stdout.write(`warm-up (${settings.duration} s per server, discarded)…`);
    for (const v of VARIANTS) {
      const warm = await measure(servers.get(idOf(v))!, load(v));
      if (warm.problems.length > 0) console.log(`\nnote: warm-up of ${idOf(v)}: ${warm.problems.join(', ')}`);
    }
    console.log(' done');

    const rounds: Round[] = [];
    const header = ['round', 'server', 'req/s', 'p50 ms', 'p99 ms', 'client CPU', 'server CPU', 'other CPU', 'vs bare node:http', ''];
    for (let round = 1; round <= settings.rounds; round++) {
      const order = roundOrder(round);
      const runs: Record<string, ServerRound> = {};
      for (const v of order) runs[idOf(v)] = await measure(servers.get(idOf(v))!, load(v));
      const done: Round = { round, order: order.map(idOf), runs };
      rounds.push(done);
      console.log(table([header, ...done.order.map((id, i) => runLine(done, id, i))]));
    }

    const checks: Check[] = [];
    for (const v of VARIANTS) checks.push(...checksOf(v, await servers.get(idOf(v))!.snapshot()));
    for (const check of checks) console.log(`check: ${check.name}: ${check.ok ? 'ok' : 'FAILED'} (${check.detail})`);

    const results: VariantResult[] = VARIANTS.map((v) => {
      const id = idOf(v);
      const valid = rounds.map((r) => r.runs[id]!).filter((run) => run.problems.length === 0);
      return {
        id, title: v.title,
        reqPerSec: median(valid.map((run) => run.client.reqPerSec)),
        vsNode: ratios(rounds, id, idOf(VARIANTS[REFERENCE]!)),
        vsFramework: v.kind === 'bare' ? undefined : ratios(rounds, id, `${v.framework}/bare`).median,
      };
    });
    const ours = results.find((r) => r.id === 'node/ours')!;
    const met = ours.vsNode.median !== undefined && ours.vsNode.median >= TARGET && checks.every((c) => c.ok);

    console.log(`\n== summary: returning visitors, ${settings.connections} connections, pipelining 1, ${settings.rounds} x ${settings.duration} s, ${pinned ? 'pinned' : 'UNPINNED'}; ${machine.cpuModel}, node ${machine.node}`);
    const rows = [['server', 'req/s', 'vs bare node:http', 'min', 'max', 'vs its framework without sessions', 'session cost']];
    for (const r of results) {
      rows.push([
        r.title, r.reqPerSec === undefined ? 'n/a' : integer.format(r.reqPerSec), ratioText(r.vsNode.median), ratioText(r.vsNode.min), ratioText(r.vsNode.max),
        r.vsFramework === undefined ? '' : ratioText(r.vsFramework), r.vsFramework === undefined ? '' : `${Math.round((1 - r.vsFramework) * 100)} %`,
      ]);
    }
    console.log(table(rows));
    console.log(`target: node:http + legacy-web-sessions >= ${TARGET.toFixed(2)}x bare node:http: ${met ? 'met' : 'NOT MET'} (${ratioText(ours.vsNode.median)})`);

    const allRuns = rounds.flatMap((r) => r.order.map((id) => ({ name: `round ${r.round} ${id}`, run: r.runs[id]! })));
    const clientBound = allRuns.filter(({ run }) => run.client.clientCpu >= CLIENT_BOUND_CPU).map(({ name }) => name);
    if (clientBound.length > 0) warnings.push(`load generator at >= ${CLIENT_BOUND_CPU * 100}% of its core in ${clientBound.length} run(s) (${clientBound.join('; ')}): those may be client-bound`);
    const disturbed = allRuns.filter(({ run }) => isDisturbed(run)).map(({ name }) => name);
    if (disturbed.length > 0) warnings.push(`other programs used CPU during ${disturbed.length} run(s) (${disturbed.join('; ')}): noisy figures`);
    const invalid = allRuns.filter(({ run }) => run.problems.length > 0).map(({ name }) => name);
    if (invalid.length > 0) warnings.push(`invalid runs (errors or non-2xx), left out of the medians: ${invalid.join('; ')}`);
    for (const warning of warnings) console.log(`WARNING: ${warning}`);

    writeJson(RESULTS_FILE, { machine, settings: { ...settings, pipelining: 1, pinned, loadGenerator: 'autocannon', target: TARGET }, warnings, checks, results, rounds });
    console.log(`\nresults written to ${fileURLToPath(RESULTS_FILE)}`);
    // Invalid runs and failed checks make it no measurement; a missed target is a result, not a failure.
    if (invalid.length > 0 || checks.some((c) => !c.ok)) process.exitCode = 1;
  } finally {
    await Promise.all([...servers.values()].map((s) => s.stop()));
  }
}

await main();
