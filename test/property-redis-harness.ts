// The harness of the model-based property test on the Redis store (property-redis.test.ts): one engine
// on createRedisStore with a ManualClock that knows when the sweep is armed, observed through Redis
// itself (a snapshot of the run's keys read in one MULTI) until it agrees with the model and nothing is
// left in flight.
import assert from 'node:assert/strict';
import type { Redis } from 'ioredis';
import { ManualClock, SessionEngine, type SessionEngineOptions, type TimerHandle } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { redisLockKey, redisProcessLocksKey } from '../src/redis/locks.js';
import type { Vars } from './model.js';
import { LOCK_TABLE, RECORDS, type Harness, type World } from './property-scenario.js';
import { poll as pollWithin } from './helpers.js';
import { deleteKeys, REDIS_URL } from './redis-support.js';

export const SWEEP_INTERVAL_MS = 1_000;
export const POLL_INTERVAL_MS = 5;
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
export function redisEngine(redis: Redis, runPrefix: () => string): (options: SessionEngineOptions<Vars>) => Promise<Harness> {
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
