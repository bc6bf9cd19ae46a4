// Random webs of closes through requests and hooks ("log out my other devices" from several devices at
// once, hooks that log out other devices in turn): whatever cycles they make, every close ends without
// session time passing (a cycle is broken, never waited out for closeTimeoutMs), each closed session's
// hook runs once, after its request left, seeing what that request wrote last (src/close-waits.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ManualClock, type CloseReason, type RequestLease, type SessionEngineOptions, type SessionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { deferred, engineWithErrors, eventually, settle } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { propertyProfile } from './property-support.js';

type Vars = { steps?: number; finished?: boolean };

interface Web {
  /** How many sessions, each with one request running. */
  readonly sessions: number;
  /** For each session, the sessions its request closes, awaiting each in turn (never itself). */
  readonly requestCloses: number[][];
  /** For each session, the sessions its hook closes, awaiting each in turn. */
  readonly hookCloses: number[][];
  /** For each session, whether its request starts its closes before the next session's request starts (else after all started). */
  readonly early: boolean[];
}

const webArb: fc.Arbitrary<Web> = fc.integer({ min: 2, max: 5 }).chain((n) => {
  const others = (i: number) => fc.uniqueArray(fc.integer({ min: 0, max: n - 1 }).filter((j) => j !== i), { maxLength: n - 1 });
  const perSession = <T>(arb: (i: number) => fc.Arbitrary<T>) => fc.tuple(...Array.from({ length: n }, (_, i) => arb(i)));
  return fc.record({
    sessions: fc.constant(n),
    requestCloses: perSession(others),
    hookCloses: perSession(others),
    early: perSession(() => fc.boolean()),
  });
});

/** Whether closes can wait on each other in a ring: session i's close waits for its request and its hook, which await their targets. */
function hasCycle(web: Web): boolean {
  const next = (i: number) => [...(web.requestCloses[i] ?? []), ...(web.hookCloses[i] ?? [])];
  const state: Array<'visiting' | 'done' | undefined> = [];
  const visit = (i: number): boolean => {
    if (state[i] === 'visiting') return true;
    if (state[i] === 'done') return false;
    state[i] = 'visiting';
    const found = next(i).some(visit);
    state[i] = 'done';
    return found;
  };
  return Array.from({ length: web.sessions }, (_, i) => i).some(visit);
}

async function runWeb(web: Web, storeOptions: () => Pick<SessionEngineOptions<Vars>, 'store'>): Promise<void> {
  const clock = new ManualClock();
  const ids: string[] = [];
  const running: boolean[] = [];
  const hooks: Array<{ session: number; reason: CloseReason; runningThen: boolean; finished: boolean | undefined }> = [];
  const { engine, errors } = engineWithErrors<Vars>({
    ...storeOptions(), clock, closeTimeoutMs: 10_000, init: () => ({ steps: 0 }),
    onClose: async (proc, reason) => {
      const session = ids.indexOf(proc.sessionId);
      hooks.push({ session, reason, runningThen: running[session] === true, finished: proc.vars.finished });
      for (const j of web.hookCloses[session] ?? []) await engine.closeSession(ids[j]!);
    },
  });
  const closeEvents: string[] = [];
  /** Awaits of a close that returned before its hook ran: only a cycle may end one early. */
  const returnedEarly: string[] = [];
  engine.on('close', (event) => { closeEvents.push(event.sessionId); });
  const gate = deferred();
  const requests: Array<Promise<void>> = [];
  try {
    const leases: Array<RequestLease<Vars>> = [];
    for (let i = 0; i < web.sessions; i++) {
      const lease = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
      ids.push(lease.sessionId);
      running.push(true);
      leases.push(lease);
    }
    const start = (i: number) => {
      const lease = leases[i]!;
      requests.push(lease.run(async () => {
        const closes = web.requestCloses[i] ?? [];
        if (closes.length === 0) await gate.promise; // works on until the end
        for (const j of closes) {
          await engine.closeSession(ids[j]!);
          if (!hooks.some((h) => h.session === j)) returnedEarly.push(`${i} → ${j}`);
          lease.proc.vars.steps = (lease.proc.vars.steps ?? 0) + 1;
        }
        lease.proc.vars.finished = true;
      }).then(() => { running[i] = false; lease.release(); }));
    };
    for (let i = 0; i < web.sessions; i++) if (web.early[i]) { start(i); await settle(2); }
    for (let i = 0; i < web.sessions; i++) if (!web.early[i]) start(i);
    await settle(10);
    gate.resolve();
    let ended = false;
    void Promise.all(requests).then(() => { ended = true; });
    assert.ok(await eventually(() => ended, 5_000), `every request ended without session time passing (${running.filter(Boolean).length} still running)`);
    // Every session some request or hook closes: closed once, hooked once, after its request, with its last write.
    const closedSessions = new Set(web.requestCloses.flat());
    for (const j of closedSessions) for (const k of web.hookCloses[j] ?? []) closedSessions.add(k); // a Set iterates what is added meanwhile
    assert.ok(await eventually(() => closeEvents.length >= closedSessions.size, 5_000), `every close ended: ${closeEvents.length} of ${closedSessions.size}`);
    await settle(10);
    assert.deepEqual(closeEvents.map((id) => ids.indexOf(id)).sort(), [...closedSessions].sort(), 'the sessions closed are those asked for, each once');
    assert.deepEqual(hooks.map((h) => h.session).sort(), [...closedSessions].sort(), 'one hook per closed session');
    for (const hook of hooks) {
      assert.equal(hook.reason, 'closed');
      assert.equal(hook.runningThen, false, `session ${hook.session}'s hook ran while its request still worked`);
      assert.equal(hook.finished, true, `session ${hook.session}'s hook saw what its request wrote last`);
    }
    assert.deepEqual(errors.map((e: SessionError) => e.code), [], 'no close waited for closeTimeoutMs');
    if (!hasCycle(web)) assert.deepEqual(returnedEarly, [], 'with no cycle, every awaited close returns after its hook ran');
  } finally {
    gate.resolve();
    clock.advance(60_000);
    await engine.stop();
  }
}

// CLOSE_CYCLES_RUNS / CLOSE_CYCLES_REDIS_RUNS and _SEED override the runs and replay a seed a failure printed.
const memory = propertyProfile('CLOSE_CYCLES', 150, 150);
const redis = propertyProfile('CLOSE_CYCLES_REDIS', 40, 40);
/** Long runs get the time they need: about 0.6 s per memory run and 2.5 s per Redis run on a loaded 2-vCPU VM. */
const timeoutFor = (runs: number, perRunMs: number): number => Math.max(120_000, runs * perRunMs);

test(`memory store: random webs of closes awaited by requests and hooks all end without waiting closeTimeoutMs, each hook once, after its request (${memory.runs} runs${memory.seed === undefined ? '' : `, seed ${memory.seed}`})`, { timeout: timeoutFor(memory.runs, 600) }, async () => {
  await fc.assert(fc.asyncProperty(webArb, (web) => runWeb(web, () => ({}))), { numRuns: memory.runs, seed: memory.seed, endOnFailure: false, verbose: 1 });
});

test(`Redis store: random webs of closes awaited by requests and hooks all end without waiting closeTimeoutMs, each hook once, after its request (${redis.runs} runs${redis.seed === undefined ? '' : `, seed ${redis.seed}`})`, { timeout: timeoutFor(redis.runs, 2_500) }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  let run = 0;
  await fc.assert(fc.asyncProperty(webArb, (web) => runWeb(web, () => ({ store: createRedisStore({ url: r.url, prefix: `${r.prefix}${run++}:`, pollIntervalMs: 20 }) }))), { numRuns: redis.runs, seed: redis.seed, endOnFailure: false, verbose: 1 });
});
