// The model-based property test on the Redis store (test/property-support.ts, the same runner, model and
// invariants as test/property-model.test.ts): one engine on createRedisStore with a ManualClock, a key
// prefix of its own per run. Everything the store does is a round trip, so a step is over when what it
// caused can be seen, not after a few event-loop turns: the runner polls (with a deadline) a snapshot of
// Redis read in one MULTI under the run's prefix until it agrees with the model and nothing is left in
// flight. The engine's own reads (sessions(), stats()) are this node's view and the sweep's gauges, so
// the truth is read from Redis; with one node the node's view must equal it.
// PROPERTY_REDIS_RUNS / PROPERTY_REDIS_SEED override the profile (100 runs locally, 300 under CI=true);
// a failure prints the seed and the shrunk sequence of operations. Needs Redis at REDIS_URL: skipped
// loudly without it, failed under CI=true.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { Redis } from 'ioredis';
import { ManualClock, SessionEngine, type CloseEvent, type RequestLease, type SessionEngineOptions, type SessionError, type TimerHandle } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { redisLockKey, redisProcessLocksKey } from '../src/redis/locks.js';
import type { Vars } from './model.js';
import { IPS, LOCK_TABLE, propertyProfile, RECORDS, runScenario, scenarioArb, type Harness, type Op, type ScenarioSettings, type World } from './property-support.js';
import { track } from './engine-harness.js';
import { eventually, poll as pollWithin } from './helpers.js';
import { deleteKeys, redisForTest, REDIS_URL, type RedisForTest } from './redis-support.js';

const SWEEP_INTERVAL_MS = 1_000;
const POLL_INTERVAL_MS = 5;
/** How long one step may take to settle: far above what it needs (milliseconds), so a hang fails instead of stalling. */
const SETTLE_WITHIN_MS = 5_000;
/** `poll` (test/helpers.ts) bounded by SETTLE_WITHIN_MS unless told. */
const poll = (condition: Parameters<typeof pollWithin>[0], withinMs = SETTLE_WITHIN_MS): ReturnType<typeof pollWithin> => pollWithin(condition, withinMs);

/**
 * A ManualClock that knows whether the store's sweep is armed on it. The sweep re-arms itself (one
 * sweepIntervalMs later) only once it has finished, claims made: while no sweep timer waits, a sweep is
 * under way, and a clock jump now would fall between two sweeps.
 */
class SweepAwareClock extends ManualClock {
  #armed = 0;

  get sweepArmed(): boolean {
    return this.#armed > 0;
  }

  override setTimer(callback: () => void, delayMs: number): TimerHandle {
    if (delayMs !== SWEEP_INTERVAL_MS) return super.setTimer(callback, delayMs);
    this.#armed++;
    let waiting = true;
    const done = (): void => {
      if (waiting) this.#armed--;
      waiting = false;
    };
    const timer = super.setTimer(() => { done(); callback(); }, delayMs);
    return { cancel: () => { done(); timer.cancel(); } };
  }
}

/** What one MULTI read of the run's keys says. */
interface Snapshot {
  readonly open: Set<string>;
  readonly idle: Set<string>;
  readonly lru: Set<string>;
  /** Session hashes by id (absent: no key). */
  readonly sessions: Map<string, Record<string, string>>;
  /** Waiters counted in Redis, by session. */
  readonly waiting: Map<string, number>;
  /** The processes counted cluster-wide (P procs), and how many each session counts (P pn). */
  readonly procs: number;
  readonly counted: Map<string, number>;
}

async function snapshot(redis: Redis, prefix: string, ids: readonly string[]): Promise<Snapshot> {
  const multi = redis.multi().zrange(`${prefix}open`, '0', '-1').zrange(`${prefix}idle`, '0', '-1').zrange(`${prefix}lru`, '0', '-1')
    .get(`${prefix}procs`).hgetall(`${prefix}pn`);
  for (const id of ids) multi.hgetall(`${prefix}s:${id}`).zcard(`${prefix}wq:${id}`);
  const replies = (await multi.exec())!.map(([error, value]) => {
    if (error) throw error;
    return value;
  });
  const [open, idle, lru, procs, counted] = replies as [string[], string[], string[], string | null, Record<string, string>];
  const sessions = new Map<string, Record<string, string>>();
  const waiting = new Map<string, number>();
  ids.forEach((id, i) => {
    const hash = replies[5 + 2 * i] as Record<string, string>;
    if (Object.keys(hash).length > 0) sessions.set(id, hash);
    waiting.set(id, replies[6 + 2 * i] as number);
  });
  return {
    open: new Set(open), idle: new Set(idle), lru: new Set(lru), sessions, waiting,
    procs: Number(procs ?? '0'), counted: new Map(Object.entries(counted).map(([id, n]) => [id, Number(n)])),
  };
}

/**
 * What this node shows, read before each snapshot: whatever it shows has happened in Redis already, so
 * the snapshot that follows reflects it (read after, it could be ahead of the snapshot).
 */
interface LocalView {
  /** No sweep under way (the next one is armed on the clock). */
  readonly sweepArmed: boolean;
  /** Requests parked on this node, waiting for their session's process. */
  readonly queued: ReadonlyMap<string, number>;
  readonly processesPerSession: number;
}

/**
 * Why the step is not over yet, or undefined once Redis agrees with the model and nothing is in flight:
 * every request answered except those waiting behind a running one, every release and spawn landed
 * (each process busy in Redis exactly when the model has it running), every claimed close ended except
 * those waiting for a running request or task, no sweep under way.
 */
function inFlight(world: World, snap: Snapshot, local: LocalView): string | undefined {
  const { model } = world;
  if (!local.sweepArmed) return 'a sweep is under way';
  const holders = new Map<string, number>();
  for (const lease of model.openLeases) holders.set(lease.sessionId, (holders.get(lease.sessionId) ?? 0) + 1);
  const running = new Set([...model.openLeases.map((l) => l.proc.processId), ...world.tasks.filter((t) => !t.ended).map((t) => t.proc.processId)]);
  for (const p of world.pendings) {
    if (p.settled) return 'an answer is not absorbed yet';
    if (p.expect !== undefined) return `a request the model refuses (${p.expect}) is not answered yet`;
    // Only a request the model has waiting may still be unanswered (with processesPerSession 2 a second
    // request of a busy session gets a process of its own at once), and only while its session runs as
    // many requests as processesPerSession allows (lowered, whatever processes it has) or has no room for
    // one more process (raised while it waited, the room is its at its next poll).
    const target = model.sessions.get(p.target);
    const running = holders.get(p.target) ?? 0;
    const waits = target !== undefined && running > 0 && p.queued && (running >= local.processesPerSession || target.requestProcesses.size >= local.processesPerSession);
    if (!waits) return `a request for ${p.target || 'a new session'} is not answered yet`;
  }
  for (const id of snap.open) if (!model.sessions.has(id)) return `session ${id} is open in Redis${model.dead.has(id) ? ' after its id died' : ''} but unknown to the model`;
  for (const s of model.sessions.values()) {
    const hash = snap.sessions.get(s.id);
    if (hash === undefined) return `open session ${s.id} has no hash`;
    const idle = snap.idle.has(s.id);
    if (idle !== snap.lru.has(s.id)) return `session ${s.id} is in one idle set of two`;
    if (idle !== model.isIdle(s)) return `session ${s.id} is ${idle ? 'idle' : 'busy'} in Redis, ${idle ? 'busy' : 'idle'} in the model`;
    const parked = local.queued.get(s.id) ?? 0;
    if (parked !== s.queued) return `${s.queued} request(s) of ${s.id} should be waiting, ${parked} are`;
    for (const pid of s.processes) {
      if (model.endedAlone.has(pid)) {
        if (hash[`k:${pid}`] !== undefined) return `task ${pid} ended but is still a process of ${s.id}`;
        continue;
      }
      const busy = (hash[`b:${pid}`] ?? '0') !== '0';
      if (busy !== running.has(pid)) return `process ${pid} of ${s.id} is ${busy ? 'busy' : 'free'} in Redis, ${busy ? 'free' : 'running'} in the model`;
    }
  }
  for (const call of world.closes) {
    if (!model.dead.has(call.sessionId)) return `the close of ${call.sessionId} is not claimed yet`;
    const draining = holders.has(call.sessionId) || world.tasks.some((t) => !t.ended && t.sessionId === call.sessionId);
    if (world.closed.has(call.sessionId) || !draining) return `closeSession(${call.sessionId}) has not returned`;
  }
  for (const id of model.dead) {
    if (world.closed.has(id) || model.renamedAway.has(id)) continue;
    const draining = holders.has(id) || world.tasks.some((t) => !t.ended && t.sessionId === id);
    if (!snap.sessions.has(id) || !draining) return `the close of ${id} has not ended`;
  }
  return undefined;
}

/**
 * maxConcurrentProcesses counts right: P procs is the sum of what each open session counts in P pn, and
 * each counts the processes its key lists (a leftover whose key expired gives that many back).
 */
function checkProcessCounts(snap: Snapshot): void {
  let sum = 0;
  for (const [id, n] of snap.counted) {
    sum += n;
    assert.ok(snap.open.has(id), `P pn counts processes for ${id}, which is not open`);
  }
  assert.equal(snap.procs, sum, 'P procs is the sum of P pn');
  for (const id of snap.open) {
    const listed = snap.sessions.get(id)?.pl?.split(' ').filter((p) => p !== '').length ?? 0;
    assert.equal(snap.counted.get(id) ?? 0, listed, `open session ${id} counts the processes its key lists`);
  }
}

/** One engine on the Redis store, observed through Redis itself. */
function redisEngine(redis: Redis, runPrefix: () => string): (options: SessionEngineOptions<Vars>) => Promise<Harness> {
  return async (options) => {
    const prefix = runPrefix();
    const clock = new SweepAwareClock();
    const store = createRedisStore({ url: REDIS_URL, prefix, pollIntervalMs: POLL_INTERVAL_MS, sweepIntervalMs: SWEEP_INTERVAL_MS });
    const engine = new SessionEngine<Vars>({ ...options, clock, store });
    /** The ids of these sessions' processes, for the lock checks. */
    const pids = (world: World, sessionIds: Iterable<string>): string[] => [...sessionIds].flatMap((id) => [...world.model.processesOf(id)]);

    const openIds = async (): Promise<Set<string>> => {
      const open = new Set(await redis.zrange(`${prefix}open`, '0', '-1'));
      const local = engine.sessions().map((s) => s.id).sort();
      assert.deepEqual(local, [...open].sort(), 'engine.sessions() on the only node lists exactly the open sessions in Redis');
      return open;
    };

    /** No lock of these processes left in Redis: neither their lock sets nor a record held by one of them. */
    const checkNoLocks = async (processIds: readonly string[], what: string): Promise<void> => {
      if (processIds.length === 0) return;
      const multi = redis.multi();
      for (const pid of processIds) multi.exists(redisProcessLocksKey(prefix, pid));
      for (let rec = 0; rec < RECORDS; rec++) multi.hget(redisLockKey(prefix, { table: LOCK_TABLE, key: rec }), 'processId');
      const replies = (await multi.exec())!.map(([, value]) => value);
      const sets = replies.slice(0, processIds.length);
      const holders = replies.slice(processIds.length);
      assert.ok(sets.every((n) => n === 0), `invariant 3: no lock set left for ${what}`);
      assert.ok(holders.every((holder) => holder === null || !processIds.includes(holder as string)), `invariant 3: no record locked by ${what} (${holders.join()})`);
    };

    // The run starts once the store has started (its sweep is armed last), so every run begins alike.
    if (await poll(() => (clock.sweepArmed ? undefined : 'starting')) !== undefined) {
      await engine.stop();
      await deleteKeys(redis, prefix);
      assert.fail(`the Redis store did not start within ${SETTLE_WITHIN_MS} ms`);
    }

    return {
      engine,
      clock,
      observer: {
        // The sweep claims due sessions once per sweepIntervalMs of session time (≤ 1 s late); a lowered
        // timeout is acted on at the next sweep, so that much session time passes after it.
        timeoutLatenessMs: SWEEP_INTERVAL_MS,
        async settle(world) {
          let last: Snapshot | undefined;
          const why = await poll(async () => {
            const seen = world.activity;
            const local: LocalView = {
              sweepArmed: clock.sweepArmed,
              queued: new Map(engine.sessions().map((info) => [info.id, info.queuedRequests])),
              processesPerSession: engine.getOption('processesPerSession'),
            };
            const ids = [...new Set([...world.model.sessions.keys(), ...[...world.model.dead].filter((id) => !world.closed.has(id))])];
            const snap = await snapshot(redis, prefix, ids);
            if (world.activity !== seen) return 'the engine moved during the read';
            for (const id of snap.open) if (world.model.dead.has(id)) assert.fail(`invariant 3: dead id ${id} is open again in Redis`);
            // The model forgets the sessions Redis has closed before it takes in the answers that came
            // before the read: a 503 comes after the evictions its own request made, as on one event loop.
            world.forgetClosed(snap.open);
            if (world.pendings.some((p) => p.settled)) {
              world.absorb();
              return 'answers just taken in';
            }
            const why = inFlight(world, snap, local);
            if (why === undefined) last = snap;
            return why;
          });
          if (why !== undefined) assert.fail(`the step did not settle within ${SETTLE_WITHIN_MS} ms: ${why}`);
          for (const s of world.model.sessions.values()) {
            assert.equal(last?.waiting.get(s.id), s.queued, `invariant 6: Redis counts every request waiting for ${s.id} (the queue bound holds cluster-wide)`);
          }
          checkProcessCounts(last!);
        },
        until: async (done) => (await poll(() => (done() ? undefined : 'not yet'))) === undefined,
        openIds,
        async bounds() {
          const open = await redis.zrange(`${prefix}open`, '0', '-1');
          const multi = redis.multi();
          for (const id of open) multi.zcard(`${prefix}wq:${id}`);
          const counted = ((await multi.exec()) ?? []).map(([, n]) => n as number);
          const local = engine.sessions().map((s) => s.queuedRequests);
          return { sessions: open.length, longestQueue: Math.max(0, ...counted, ...local) };
        },
        async checkClosed(world, sessionIds) {
          if (sessionIds.length === 0) return;
          const multi = redis.multi();
          for (const id of sessionIds) multi.exists(`${prefix}s:${id}`, `${prefix}wq:${id}`);
          const left = ((await multi.exec()) ?? []).map(([, n]) => n as number);
          assert.ok(left.every((n) => n === 0), `invariant 3: a closed session leaves no key (${sessionIds.join()})`);
          await checkNoLocks(pids(world, sessionIds), `the processes of ${sessionIds.join()}`);
        },
        async finish(round, afterTurn, stopped) {
          // stop() asks Redis whether other nodes are alive before it claims every session for
          // 'shutdown' (the memory store starts closing them at the call): the requests and tasks end
          // once the claim is made, as they do there, so a task's end cannot overtake the close.
          const claimed = await poll(async () => ((await redis.zcard(`${prefix}open`)) === 0 ? undefined : 'claiming'));
          if (claimed !== undefined) assert.fail(`stop() did not claim every session within ${SETTLE_WITHIN_MS} ms`);
          await poll(() => {
            round();
            afterTurn();
            return stopped() ? undefined : 'stopping';
          }, 10_000);
        },
        async checkEmpty(world) {
          const keys: string[] = [];
          let cursor = '0';
          do {
            const [next, found] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
            cursor = next;
            keys.push(...found.map((k) => k.slice(prefix.length)));
          } while (cursor !== '0');
          const kept = keys.filter((k) => /^(s|wq|lock|plocks|nb):|^(open|idle|lru|closing|pn)$/.test(k));
          assert.deepEqual(kept, [], 'after stop(): no session, waiter, lock or running process left in Redis');
          assert.ok(['0', null].includes(await redis.get(`${prefix}procs`)), 'after stop(): no process counted');
          await checkNoLocks(pids(world, [...world.model.dead, ...world.model.sessions.keys()]), 'any process');
        },
      },
      async dispose(stopped) {
        if (!stopped) {
          // A failed run: stop anyway (a close that waits for something that never ends times out on
          // the clock), so no connection outlives the run.
          let done = false;
          void engine.stop().then(() => { done = true; });
          await poll(() => {
            clock.advance(engine.getOption('closeTimeoutMs'));
            return done ? undefined : 'stopping';
          }, 10_000);
        }
        await deleteKeys(redis, prefix);
      },
    };
  };
}

// Every operation of the memory run, the two the store once got wrong included (a request from another
// IP behind a waiting one; a close of a session with several requests waiting): see the tests below.
const settings: ScenarioSettings = {};

// Local `npm test`: 100 runs; CI: 300 (each run is one engine and a few hundred Redis round trips).
const { runs, seed } = propertyProfile('PROPERTY_REDIS', 100, 300);

test(`random interleavings keep invariants 1–7 on the Redis store (${runs} runs${seed === undefined ? '' : `, seed ${seed}`})`, { timeout: 600_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return; // skipped (failed under CI=true)
  let run = 0;
  const factory = redisEngine(r.redis, () => `${r.prefix}${++run}:`);
  await fc.assert(fc.asyncProperty(scenarioArb, (ops: Op[]) => runScenario(ops, factory, settings)), { numRuns: runs, seed, endOnFailure: false, verbose: 1 });
});

// ---- what the property test found (regression tests) ---------------------------------------------------

const IP = IPS[0];
const OTHER_IP = IPS[1];
type Tracked = ReturnType<typeof track<RequestLease<Vars>>>;

/** An engine on the Redis store under the test's prefix, its 'error' and 'close' events collected. */
function engineOn(r: RedisForTest, options: SessionEngineOptions<Vars> = {}): { engine: SessionEngine<Vars>; errors: SessionError[]; closes: CloseEvent[] } {
  const engine = new SessionEngine<Vars>({
    clock: new ManualClock(), closeTimeoutMs: 10_000, ...options,
    store: createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: POLL_INTERVAL_MS, sweepIntervalMs: SWEEP_INTERVAL_MS }),
  });
  const errors: SessionError[] = [];
  const closes: CloseEvent[] = [];
  engine.on('error', (error) => errors.push(error));
  engine.on('close', (event) => closes.push(event));
  return { engine, errors, closes };
}

/** The end of a test: the leases and every request's lease (those still coming too) are released, then the engine stops. */
async function releaseAllAndStop(engine: SessionEngine<Vars>, leases: readonly RequestLease<Vars>[], requests: readonly Tracked[]): Promise<void> {
  for (const lease of leases) lease.release();
  await eventually(() => {
    for (const request of requests) request.value?.release();
    return requests.every((request) => request.settled);
  }, 5_000);
  await engine.stop();
}

test('a request from another IP than the session\'s is refused at once (400), also while a request of the session waits for its process', {
  timeout: 20_000,
}, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const { engine } = engineOn(r);
  const holder = await engine.acquire({ sessionId: undefined, ip: IP });
  const requests: Tracked[] = [];
  let answered = false;
  try {
    requests.push(track(engine.acquire({ sessionId: holder.sessionId, ip: IP })));
    assert.ok(await eventually(() => engine.sessions()[0]?.queuedRequests === 1), 'the same-IP request waits');
    requests.push(track(engine.acquire({ sessionId: holder.sessionId, ip: OTHER_IP })));
    answered = await eventually(() => requests[1]!.settled, 1_000);
  } finally {
    await releaseAllAndStop(engine, [holder], requests);
  }
  assert.ok(answered, 'answered while the session\'s request still runs');
  assert.equal((requests[1]!.error as SessionError | undefined)?.code, 'ERR_SESSION_IP_MISMATCH');
});

test('the requests waiting in a session that closes go on together in one new session, as on the memory store: no session each, no needless eviction', {
  timeout: 20_000,
}, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const { engine, closes } = engineOn(r, { maxSessions: 2 });
  const idle = await engine.acquire({ sessionId: undefined, ip: IP });
  idle.release();
  assert.ok(await eventually(async () => (await r.redis.zscore(`${r.prefix}idle`, idle.sessionId)) !== null), 'the first session is idle');
  const holder = await engine.acquire({ sessionId: undefined, ip: IP });
  const requests: Tracked[] = [];
  const leases = [holder];
  let first: RequestLease<Vars> | undefined;
  let second: RequestLease<Vars> | undefined;
  try {
    for (let n = 1; n <= 2; n++) {
      requests.push(track(engine.acquire({ sessionId: holder.sessionId, ip: IP })));
      assert.ok(await eventually(() => engine.sessions().find((s) => s.id === holder.sessionId)?.queuedRequests === n), `request ${n} waits`);
    }
    const closing = track(engine.closeSession(holder.sessionId));
    assert.ok(await eventually(() => requests[0]!.settled), 'the first waiting request goes on in a new session at once');
    first = requests[0]!.value;
    // The second one waits for the first one's process in that same session: released, it gets in.
    first?.release();
    assert.ok(await eventually(() => requests[1]!.settled), 'the second one gets in');
    second = requests[1]!.value;
    holder.release();
    assert.ok(await eventually(() => closing.settled), 'the close ends');
  } finally {
    await releaseAllAndStop(engine, leases, requests);
  }
  assert.ok(first !== undefined && second !== undefined);
  assert.notEqual(first.sessionId, holder.sessionId);
  assert.equal(second.sessionId, first.sessionId, 'one new session for both');
  assert.deepEqual(closes.filter((e) => e.reason === 'evicted').map((e) => e.sessionId), [], 'the idle session of someone else is not evicted to make room');
});

test('an option set as soon as the engine is made (Redis still connecting) is stored for every node, reports no error, and is not reverted by a value stored earlier', {
  timeout: 20_000,
}, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  await r.redis.hset(`${r.prefix}opts`, 'maxSessions', '5'); // set at run time by a node that ran before
  const { engine, errors } = engineOn(r);
  engine.setOption('maxSessions', 2);
  try {
    (await engine.acquire({ sessionId: undefined, ip: IP })).release(); // the store has started
    await eventually(async () => (await r.redis.hget(`${r.prefix}opts`, 'maxSessions')) === '2', 1_000);
    assert.equal(await r.redis.hget(`${r.prefix}opts`, 'maxSessions'), '2', 'stored for the other nodes');
  } finally {
    await engine.stop();
  }
  assert.equal(engine.getOption('maxSessions'), 2, 'the value set here stays');
  assert.deepEqual(errors.map((e) => e.message), []);
});

test('a logout that waits for a spawned task: the request\'s hook gets that very process as the request left it, even when the request ended first (its save still on its way)', {
  timeout: 20_000,
}, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const hooked = new Map<string, { proc: unknown; w: unknown }>();
  const { engine, errors, closes } = engineOn(r, { onClose: (proc) => { hooked.set(proc.processId, { proc, w: proc.vars.w }); } });
  try {
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    let endTask: (() => void) | undefined;
    lease.proc.spawn('task', () => new Promise<void>((resolve) => { endTask = resolve; }));
    assert.ok(await eventually(() => endTask !== undefined), 'the task runs');
    lease.proc.vars.w = 1;
    const closing = track(lease.run(() => engine.closeSession(lease.sessionId)));
    // The close is claimed and waits for the task; the handler goes on, writes, and ends before the task does.
    assert.ok(await eventually(() => engine.stats().closingSessions > 0), 'the close is under way');
    lease.proc.vars.w = 2;
    lease.release();
    endTask!();
    assert.ok(await eventually(() => closing.settled), 'the close ends');
    const request = hooked.get(lease.proc.processId);
    assert.equal(request?.proc, lease.proc, 'the hook sees the live process, not one rebuilt from a save that may not have landed');
    assert.equal(request?.w, 2);
    assert.equal(hooked.size, 2, 'one hook per process (request and task)');
    assert.deepEqual(closes.map((e) => e.reason), ['closed']);
  } finally {
    await engine.stop();
  }
  assert.deepEqual(errors.map((e) => e.message), []);
});

test('requests that end in the same turn are saved together (script calls of at most 128) and each session gets back its own state', {
  timeout: 20_000,
}, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const { engine, errors } = engineOn(r, { init: () => ({ w: -1 }), maxSessions: 200, maxConcurrentProcesses: 200 });
  try {
    const leases = await Promise.all(Array.from({ length: 150 }, () => engine.acquire({ sessionId: undefined, ip: IP })));
    leases.forEach((lease, i) => { lease.proc.vars.w = i; });
    for (const lease of leases) lease.release(); // one turn: a full call of 128, then one of 22
    for (const [i, lease] of leases.entries()) {
      const again = await engine.acquire({ sessionId: lease.sessionId, ip: IP });
      assert.equal(again.sessionId, lease.sessionId);
      assert.equal(again.proc.vars.w, i, `session ${i} has its own vars back`);
      again.release();
    }
  } finally {
    await engine.stop();
  }
  assert.deepEqual(errors.map((e) => e.message), []);
});

test('closeSession from a callback that outlived its request (a timer of an earlier request): closed as from outside, the hook sees the state the latest request left, its locks are released', {
  timeout: 20_000,
}, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const hooked: { pid: string; w: unknown }[] = [];
  const { engine, errors } = engineOn(r, { onClose: (proc) => { hooked.push({ pid: proc.processId, w: proc.vars.w }); } });
  try {
    const first = await engine.acquire({ sessionId: undefined, ip: IP });
    first.proc.vars.w = 1;
    let fire!: () => void;
    const later = new Promise<void>((resolve) => { fire = resolve; });
    // The first request leaves a logout for later, in its own async context (its old copy of the process).
    const logout = first.run(() => later.then(() => engine.closeSession(engine.currentSessionId())));
    first.release();
    const second = await engine.acquire({ sessionId: first.sessionId, ip: IP }); // once the first release has landed
    assert.equal(second.sessionId, first.sessionId);
    assert.equal(second.proc.processId, first.proc.processId, 'the same process, rebuilt for the second request');
    second.proc.vars.w = 2;
    assert.equal(await second.proc.locks.tryLock('T', 'k1'), true);
    second.release();
    assert.ok(await eventually(async () => (await r.redis.hget(`${r.prefix}s:${first.sessionId}`, `b:${first.proc.processId}`)) === '0'), 'the second request has left');
    fire();
    assert.equal(await logout, true);
    assert.deepEqual(hooked, [{ pid: first.proc.processId, w: 2 }]);
    assert.deepEqual(await r.redis.keys(`${r.prefix}lock*`), [], 'no record lock left behind');
    assert.deepEqual(await r.redis.keys(`${r.prefix}plocks*`), []);
  } finally {
    await engine.stop();
  }
  assert.deepEqual(errors.map((e) => e.message), []);
});


test('a logout from inside while another request of the session enters on the same node (processesPerSession 2): recognised as from inside, no drain timeout, the hook sees the live vars', {
  timeout: 20_000,
}, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const hooked: { pid: string; w: unknown }[] = [];
  const clock = new ManualClock();
  const { engine, errors } = engineOn(r, { clock, processesPerSession: 2, onClose: (proc) => { hooked.push({ pid: proc.processId, w: proc.vars.w }); } });
  let logout: ReturnType<typeof track<boolean>> | undefined;
  let a: RequestLease<Vars> | undefined;
  let b: RequestLease<Vars> | undefined;
  try {
    const first = await engine.acquire({ sessionId: undefined, ip: IP });
    first.release();
    a = await engine.acquire({ sessionId: first.sessionId, ip: IP });
    a.proc.vars.w = 42;
    const entering = engine.acquire({ sessionId: first.sessionId, ip: IP }); // its enter is on its way...
    for (let i = 0; i < 20; i++) await Promise.resolve(); // ...and its reply cannot have been read yet
    const closing = track(a.run(() => engine.closeSession(engine.currentSessionId())));
    logout = closing;
    const other = await entering.catch(() => undefined);
    b = other;
    if (other !== undefined) {
      // It stops when its signal says the session is closing.
      if (other.proc.signal.aborted) other.release();
      else other.proc.signal.addEventListener('abort', () => other.release());
    }
    // With the ManualClock nothing times out on its own: a logout not recognised as from inside never ends.
    assert.ok(await eventually(() => closing.settled, 5_000), 'the logout ends without waiting on itself');
    assert.equal(closing.value, true);
    assert.deepEqual(hooked.find((h) => h.pid === a!.proc.processId), { pid: a.proc.processId, w: 42 });
  } finally {
    // On a regression the close waits on the logout itself: the request ends and the drain times out,
    // so the engine can stop (stop() drains running requests on the ManualClock, which never moves).
    a?.release();
    b?.release();
    if (logout?.settled !== true) clock.advance(60_000);
    await engine.stop();
  }
  assert.deepEqual(errors.map((e) => e.message), []);
});
