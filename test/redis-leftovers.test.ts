// Leftovers: ids a crashed cluster left listed whose session keys expired (every key of a session
// expires a grace period after its timeout, so a cluster down that long comes back to ids without
// sessions). They must give back every place they held (sessions, processes) and never block anyone.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type RequestLease, type SessionEngineOptions, type SessionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { eventually } from './helpers.js';
import type { Vars } from './model.js';
import { redisForTest, type RedisForTest } from './redis-support.js';

const IP = '127.0.0.1';
const SWEEP_INTERVAL_MS = 1_000;
const POLL_INTERVAL_MS = 5;

function storeFor(r: RedisForTest, onStop: 'keep' | 'close' = 'close'): SessionEngineOptions<Vars>['store'] {
  return createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: POLL_INTERVAL_MS, sweepIntervalMs: SWEEP_INTERVAL_MS, onStop });
}

/**
 * Runs `body` with one engine on the test's prefix, its time on a ManualClock; stops the engine after
 * it, and the engine must have reported no error.
 */
async function withEngine(t: TestContext, options: SessionEngineOptions<Vars>, body: (r: RedisForTest, engine: SessionEngine<Vars>, clock: ManualClock) => Promise<void>): Promise<void> {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const engine = new SessionEngine<Vars>({ clock, ...options, store: storeFor(r) });
  const errors: SessionError[] = [];
  engine.on('error', (error) => errors.push(error));
  try {
    await body(r, engine, clock);
  } finally {
    await engine.stop();
  }
  assert.deepEqual(errors.map((e) => e.message), []);
}

/** What Redis counts: open sessions, processes, and the processes each session counts. */
async function counts(r: RedisForTest): Promise<{ open: number; procs: number; counted: Record<string, string> }> {
  const [open, procs, counted] = await Promise.all([r.redis.zcard(`${r.prefix}open`), r.redis.get(`${r.prefix}procs`), r.redis.hgetall(`${r.prefix}pn`)]);
  return { open, procs: Number(procs ?? '0'), counted };
}

test('a leftover gives back the processes it counted: at maxConcurrentProcesses a newcomer gets in', {
  timeout: 20_000,
}, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const first = new SessionEngine<Vars>({ clock: new ManualClock(), store: storeFor(r, 'keep') });
  const lease = await first.acquire({ sessionId: undefined, ip: IP });
  lease.release();
  assert.ok(await eventually(async () => (await r.redis.zcard(`${r.prefix}lru`)) === 1), 'idle');
  await first.stop();
  await r.redis.del(`${r.prefix}s:${lease.sessionId}`);

  const engine = new SessionEngine<Vars>({ clock: new ManualClock(), maxConcurrentProcesses: 1, store: storeFor(r) });
  const errors: SessionError[] = [];
  engine.on('error', (error) => errors.push(error));
  try {
    const newcomer = await engine.acquire({ sessionId: undefined, ip: IP });
    assert.notEqual(newcomer.sessionId, lease.sessionId);
    assert.deepEqual(await counts(r), { open: 1, procs: 1, counted: { [newcomer.sessionId]: '1' } }, 'only the newcomer counts');
    newcomer.release();
  } finally {
    await engine.stop();
  }
  assert.deepEqual(errors.map((e) => e.message), []);
});

test('a session whose key expired while it ran (in no idle set) is found by the sweep and gives back its place and its process', {
  timeout: 20_000,
}, (t) => withEngine(t, { maxSessions: 1 }, async (r, engine, clock) => {
  const running = await engine.acquire({ sessionId: undefined, ip: IP });
  // Its key expires while it runs; its release finds nothing to write. What is left: its id counted
  // open, its process counted, and no idle set listing it, as after a cluster down for that long.
  await r.redis.del(`${r.prefix}s:${running.sessionId}`);
  running.release();
  assert.ok(await eventually(async () => (await r.redis.sismember(`${r.prefix}nb:${(await r.redis.smembers(`${r.prefix}nodes`))[0]}`, `${running.sessionId} ${running.proc.processId}`)) === 0), 'the release landed');
  assert.deepEqual(await counts(r), { open: 1, procs: 1, counted: { [running.sessionId]: '1' } });
  const refused = await engine.acquire({ sessionId: undefined, ip: IP }).then((lease) => { lease.release(); return 'created'; }, (error: unknown) => (error as SessionError).code);
  assert.equal(refused, 'ERR_SESSION_LIMIT', 'the leftover holds the only place until a sweep finds it');

  clock.advance(SWEEP_INTERVAL_MS);
  assert.ok(await eventually(async () => (await counts(r)).open === 0), 'the sweep forgot it');
  assert.deepEqual(await counts(r), { open: 0, procs: 0, counted: {} });
  const newcomer = await engine.acquire({ sessionId: undefined, ip: IP });
  newcomer.release();
}));

test('a leftover found by the timeout sweep gives back its process', {
  timeout: 20_000,
}, (t) => withEngine(t, {}, async (r, engine, clock) => {
  const lease = await engine.acquire({ sessionId: undefined, ip: IP });
  lease.release();
  assert.ok(await eventually(async () => (await r.redis.zcard(`${r.prefix}idle`)) === 1), 'idle');
  await r.redis.del(`${r.prefix}s:${lease.sessionId}`);
  clock.advance(engine.getOption('inactiveProcessTimeoutMs') + SWEEP_INTERVAL_MS);
  assert.ok(await eventually(async () => (await r.redis.zcard(`${r.prefix}idle`)) === 0), 'swept');
  assert.deepEqual(await counts(r), { open: 0, procs: 0, counted: {} });
}));

/** `count` ids counted open with live keys (ranks 0 to count - 1): what the open check walks past. */
async function liveIds(r: RedisForTest, count: number): Promise<void> {
  const multi = r.redis.multi();
  for (let i = 0; i < count; i++) multi.hset(`${r.prefix}s:live-${i}`, 'st', 'o').zadd(`${r.prefix}open`, i, `live-${i}`);
  await multi.exec();
}

/** An id counted open (and its processes) whose key is gone, at `score` in the open set. */
async function leftover(r: RedisForTest, id: string, score: number, processes: number): Promise<void> {
  await r.redis.multi().zadd(`${r.prefix}open`, score, id).hset(`${r.prefix}pn`, id, processes).incrby(`${r.prefix}procs`, processes).exec();
}

const isOpen = async (r: RedisForTest, id: string): Promise<boolean> => (await r.redis.zscore(`${r.prefix}open`, id)) !== null;

// A 1 ms timeout: where the check goes on must outlive the time between sweeps whatever the timeout.
const OPEN_CHECK_OPTIONS: SessionEngineOptions<Vars> = { inactiveProcessTimeoutMs: 1 };

/**
 * The store started and its own first session timed out, so the open set holds only what this makes:
 * 64 live ids, then the leftover 'gone-late' at rank 64; then one sweep, whose check stops after live-63.
 */
async function firstCheckDone(r: RedisForTest, engine: SessionEngine<Vars>, clock: ManualClock): Promise<void> {
  (await engine.acquire({ sessionId: undefined, ip: IP })).release();
  clock.advance(SWEEP_INTERVAL_MS);
  assert.ok(await eventually(async () => (await counts(r)).procs === 0 && (await r.redis.zcard(`${r.prefix}closing`)) === 0), 'timed out');
  await liveIds(r, 64);
  await leftover(r, 'gone-late', 100, 1);
  clock.advance(SWEEP_INTERVAL_MS);
  assert.ok(await eventually(async () => (await r.redis.get(`${r.prefix}oscan`)) === '64 live-63'), 'the first sweep checked the first 64 ids');
}

test('the sweep\'s check of open ids goes round the whole set: a leftover past the first 64 is found by a later sweep, then the check starts over', {
  timeout: 20_000,
}, (t) => withEngine(t, OPEN_CHECK_OPTIONS, async (r, engine, clock) => {
  await firstCheckDone(r, engine, clock);
  assert.equal(await isOpen(r, 'gone-late'), true, 'not reached yet');
  clock.advance(SWEEP_INTERVAL_MS);
  assert.ok(await eventually(async () => !(await isOpen(r, 'gone-late'))), 'the next sweep goes on from there and finds it');
  assert.equal(Number(await r.redis.get(`${r.prefix}procs`)), 0, 'its process given back');
  assert.equal(await r.redis.hexists(`${r.prefix}pn`, 'gone-late'), 0);
  assert.equal(await r.redis.get(`${r.prefix}oscan`), '0 ', 'the end of the set: the next check starts at the top');

  await leftover(r, 'gone-first', -1, 2);
  clock.advance(SWEEP_INTERVAL_MS);
  assert.ok(await eventually(async () => !(await isOpen(r, 'gone-first'))), 'found from the top again');
  assert.equal(Number(await r.redis.get(`${r.prefix}procs`)), 0);
}));

test('the open check goes on after the last id it checked: older sessions closing between two sweeps make it skip nothing', {
  timeout: 20_000,
}, (t) => withEngine(t, OPEN_CHECK_OPTIONS, async (r, engine, clock) => {
  await firstCheckDone(r, engine, clock);
  // Ten of the sessions already checked leave the open set: the leftover moves up to rank 54.
  await r.redis.zrem(`${r.prefix}open`, ...Array.from({ length: 10 }, (_, i) => `live-${i}`));
  clock.advance(SWEEP_INTERVAL_MS);
  assert.ok(await eventually(async () => !(await isOpen(r, 'gone-late'))), 'found by the next sweep, not a whole pass later');
}));

test('a leftover a dead node was running is forgotten as soon as that node is found dead, wherever it is in the open set', {
  timeout: 20_000,
}, (t) => withEngine(t, {}, async (r, engine, clock) => {
  (await engine.acquire({ sessionId: undefined, ip: IP })).release(); // the store has started
  await liveIds(r, 64); // ahead of it: the open check does not reach it in this sweep
  await leftover(r, 'gone-running', 1e15, 1);
  await r.redis.multi().sadd(`${r.prefix}nodes`, 'ghost').set(`${r.prefix}left:ghost`, '1').sadd(`${r.prefix}nb:ghost`, 'gone-running r999').exec();
  clock.advance(SWEEP_INTERVAL_MS);
  assert.ok(await eventually(async () => !(await isOpen(r, 'gone-running'))), 'forgotten by the first sweep');
  assert.equal(await r.redis.hexists(`${r.prefix}pn`, 'gone-running'), 0);
  assert.equal(await r.redis.exists(`${r.prefix}nb:ghost`), 0);
}));

test('a regenerated session counts its processes under its new id; two processes of one session count two', {
  timeout: 20_000,
}, (t) => withEngine(t, { processesPerSession: 2 }, async (r, engine, clock) => {
  const first = await engine.acquire({ sessionId: undefined, ip: IP });
  const second = await engine.acquire({ sessionId: first.sessionId, ip: IP });
  assert.notEqual(second.proc.processId, first.proc.processId);
  assert.deepEqual(await counts(r), { open: 1, procs: 2, counted: { [first.sessionId]: '2' } });
  first.release();
  second.release();
  assert.ok(await eventually(async () => (await r.redis.zcard(`${r.prefix}lru`)) === 1), 'idle');
  const oldId = first.sessionId;
  const renamed = await engine.regenerate(oldId);
  assert.ok(renamed !== null && renamed !== oldId);
  assert.deepEqual(await counts(r), { open: 1, procs: 2, counted: { [renamed]: '2' } });
}));

test('a session made before P pn existed never counts below none: a task ending in it, then forgetting it, takes nothing more off', {
  timeout: 20_000,
}, (t) => withEngine(t, {}, async (r, engine, clock) => {
  const lease = await engine.acquire({ sessionId: undefined, ip: IP });
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => { finish = resolve; });
  lease.proc.spawn('task', () => finished);
  lease.release();
  assert.ok(await eventually(async () => Number(await r.redis.get(`${r.prefix}procs`)) === 2), 'the task counts');
  await r.redis.hdel(`${r.prefix}pn`, lease.sessionId); // as the version before P pn made it
  finish();
  assert.ok(await eventually(async () => Number(await r.redis.get(`${r.prefix}procs`)) === 1), 'the task ended');
  assert.equal(await r.redis.hexists(`${r.prefix}pn`, lease.sessionId), 0, 'no negative count made up');
  assert.ok(await eventually(async () => (await r.redis.zcard(`${r.prefix}idle`)) === 1), 'idle');
  await r.redis.del(`${r.prefix}s:${lease.sessionId}`);
  clock.advance(engine.getOption('inactiveProcessTimeoutMs') + SWEEP_INTERVAL_MS);
  assert.ok(await eventually(async () => (await r.redis.zcard(`${r.prefix}open`)) === 0), 'forgotten');
  assert.equal(Number(await r.redis.get(`${r.prefix}procs`)), 1, 'what it did not count stays as the old version left it, nothing added');
}));

test('the shared keys keep their TTL while a node lives, even when no session is created for longer than it', {
  timeout: 20_000,
}, (t) => withEngine(t, {}, async (r, engine, clock) => {
  const lease = await engine.acquire({ sessionId: undefined, ip: IP });
  lease.release();
  // As if the last create were long ago: the shared keys lost their TTL's head start.
  for (const key of ['open', 'procs', 'pn', 'idle', 'lru', 'lrun']) await r.redis.pexpire(`${r.prefix}${key}`, 60_000);
  clock.advance(SWEEP_INTERVAL_MS);
  const ttl = engine.getOption('inactiveProcessTimeoutMs');
  assert.ok(await eventually(async () => (await r.redis.pttl(`${r.prefix}open`)) > ttl), 'the sweep refreshed them');
  for (const key of ['open', 'procs', 'pn', 'idle', 'lru', 'lrun', 'oscan']) {
    assert.ok((await r.redis.pttl(`${r.prefix}${key}`)) > ttl, `${key} lives as long as a session key may`);
  }
}));

test('leftover ids (their key expired: a crashed cluster) make no room they do not hold, and a cluster stop forgets them everywhere', {
  timeout: 20_000,
}, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const store = (onStop: 'keep' | 'close'): SessionEngineOptions<Vars>['store'] => storeFor(r, onStop);
  const idleIds = async (): Promise<string[]> => r.redis.zrange(`${r.prefix}lru`, '0', '-1');
  // Two idle sessions whose keys then expire; one is also no longer counted open (as a cluster stop of an
  // earlier version left it).
  const first = new SessionEngine<Vars>({ clock: new ManualClock(), store: store('keep') });
  const gone: string[] = [];
  for (let i = 0; i < 2; i++) {
    const lease = await first.acquire({ sessionId: undefined, ip: IP });
    gone.push(lease.sessionId);
    lease.release();
  }
  assert.ok(await eventually(async () => (await idleIds()).length === 2), 'both idle');
  await first.stop();
  for (const id of gone) await r.redis.del(`${r.prefix}s:${id}`);
  await r.redis.zrem(`${r.prefix}open`, gone[0]!);

  const engine = new SessionEngine<Vars>({ clock: new ManualClock(), maxSessions: 2, store: store('close') });
  const errors: SessionError[] = [];
  engine.on('error', (error) => errors.push(error));
  const leases: RequestLease<Vars>[] = [];
  try {
    // gone[1] still counts open and frees its place; gone[0] holds none.
    leases.push(await engine.acquire({ sessionId: undefined, ip: IP }));
    leases.push(await engine.acquire({ sessionId: undefined, ip: IP }));
    const third = await engine.acquire({ sessionId: undefined, ip: IP }).then((lease) => { leases.push(lease); return 'created'; }, (error: unknown) => (error as SessionError).code);
    assert.equal(third, 'ERR_SESSION_LIMIT');
    assert.equal(await r.redis.zcard(`${r.prefix}open`), 2, 'two sessions, the cap');
    assert.deepEqual(await idleIds(), [], 'both leftovers forgotten');
    for (const lease of leases.splice(0)) lease.release();
    // A cluster stop that meets a leftover in the open set forgets it in the idle order too.
    assert.ok(await eventually(async () => (await idleIds()).length === 2), 'both idle');
    const [late] = await idleIds();
    await r.redis.del(`${r.prefix}s:${late!}`);
  } finally {
    for (const lease of leases) lease.release();
    await engine.stop();
  }
  assert.deepEqual(await idleIds(), []);
  assert.deepEqual(errors.map((e) => e.message), []);
});

test('a cluster stop closes every session even when a whole batch of the open set is leftovers (keys expired)', {
  timeout: 20_000,
}, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const hooked: string[] = [];
  const engine = new SessionEngine<Vars>({
    clock: new ManualClock(), onClose: (proc) => { hooked.push(proc.sessionId); },
    store: storeFor(r),
  });
  const live: string[] = [];
  for (let i = 0; i < 3; i++) {
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    live.push(lease.sessionId);
    lease.release();
  }
  // 600 ids counted open whose keys are gone, older than the live sessions: the first batch is all leftovers.
  const leftovers = Array.from({ length: 600 }, (_, i) => [i, `leftover-${i}`] as const).flat();
  await r.redis.zadd(`${r.prefix}open`, ...leftovers);
  await r.redis.hset(`${r.prefix}pn`, Object.fromEntries(Array.from({ length: 600 }, (_, i) => [`leftover-${i}`, '1'])));
  await r.redis.incrby(`${r.prefix}procs`, 600);
  await engine.stop();
  assert.deepEqual([...hooked].sort(), [...live].sort(), 'every live session was closed with its hook');
  assert.equal(await r.redis.zcard(`${r.prefix}open`), 0);
  assert.deepEqual(await counts(r), { open: 0, procs: 0, counted: {} }, 'the leftovers gave their processes back');
});

test('the set a node of an earlier version files under a node named \'\' (a rename of a session whose process was freed) is dropped by the sweep', {
  timeout: 20_000,
}, (t) => withEngine(t, {}, async (r, engine, clock) => {
  const lease = await engine.acquire({ sessionId: undefined, ip: IP }); // the store has started
  lease.release();
  await r.redis.sadd(`${r.prefix}nb:`, `${lease.sessionId} ${lease.proc.processId}`);
  clock.advance(SWEEP_INTERVAL_MS);
  assert.ok(await eventually(async () => (await r.redis.exists(`${r.prefix}nb:`)) === 0), 'gone after a sweep');
}));
