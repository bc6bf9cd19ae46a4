// Redis, the close run on the work's own node: a spawned task or a request whose init ends while the
// close hooks its process (the drain gave up on it at closeTimeoutMs) must not start under that hook.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type RequestLease, type SessionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { track } from './engine-harness.js';
import { deferred, eventually, settle } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { settledAsTimePasses } from './redis-crossing.js';

type Vars = Record<string, unknown>;

test('redis: a task whose init ends while its node\'s close hooks its process never runs under that hook', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const initGate = deferred();
  const hookGate = deferred();
  let taskHookStarted = false;
  const seenByHook: unknown[] = [];
  const client = await r.client();
  const engine = new SessionEngine<Vars>({
    clock, closeTimeoutMs: 10_000,
    store: createRedisStore({ redis: client, prefix: r.prefix, pollIntervalMs: 5, sweepIntervalMs: 1_000 }),
    init: (proc) => (proc.name === 'task' ? initGate.promise.then(() => ({ from: 'init' })) : {}),
    onClose: async (proc) => {
      if (proc.name !== 'task') return;
      taskHookStarted = true;
      await hookGate.promise;
      seenByHook.push({ ...proc.vars });
    },
  });
  const errors: SessionError[] = [];
  engine.on('error', (e) => errors.push(e));
  let ran = false;
  try {
    const a = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
    a.run(() => a.proc.spawn('task', async () => { ran = true; }));
    a.release();
    assert.ok(await eventually(async () => / t/.test(await r.redis.hget(`${r.prefix}s:${a.sessionId}`, 'pl') ?? ''), 5_000), 'the task\'s process is registered');
    const closing = track(engine.closeSession(a.sessionId));
    assert.ok(await eventually(() => { clock.advance(2_000); return taskHookStarted; }, 5_000), 'the close hooks the task\'s process');
    initGate.resolve();
    await settle(20);
    assert.equal(ran, false, 'the task does not start under its own process\'s hook');
    hookGate.resolve();
    assert.ok(await eventually(() => closing.settled, 5_000));
    assert.deepEqual(seenByHook, [{}], 'init\'s vars did not come into the hooked process');
    assert.ok(await eventually(() => errors.some((e) => e.code === 'ERR_SESSION_TASK_FAILED'), 5_000), 'reported as refused');
    assert.deepEqual(errors.map((e) => e.code).sort(), ['ERR_SESSION_DRAIN_TIMEOUT', 'ERR_SESSION_TASK_FAILED'], 'nothing else reported');
    assert.deepEqual(await r.redis.keys(`${r.prefix}s:*`), [], 'no session key left');
  } finally {
    initGate.resolve();
    hookGate.resolve();
    clock.advance(60_000);
    await engine.stop();
  }
});

test('redis: a request whose init ends while its node\'s close hooks its process is refused (ERR_SESSION_CLOSED), never runs under that hook', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const initGate = deferred();
  const hookGate = deferred();
  let inits = 0;
  let secondPid: string | undefined;
  let secondHookStarted = false;
  const seenByHook: unknown[] = [];
  const client = await r.client();
  const engine = new SessionEngine<Vars>({
    clock, closeTimeoutMs: 10_000, processesPerSession: 2,
    store: createRedisStore({ redis: client, prefix: r.prefix, pollIntervalMs: 5, sweepIntervalMs: 1_000 }),
    // The session's second process (a request while the first is busy) waits for the gate.
    init: (proc) => (++inits === 2 ? (secondPid = proc.processId, initGate.promise.then(() => ({ from: 'init' }))) : {}),
    onClose: async (proc) => {
      if (proc.processId !== secondPid) return;
      secondHookStarted = true;
      await hookGate.promise;
      seenByHook.push({ ...proc.vars });
    },
  });
  let granted: RequestLease<Vars> | undefined;
  try {
    const a = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
    const second = engine.acquire({ sessionId: a.sessionId, ip: '127.0.0.1' }).then((lease) => ({ lease }), (error: SessionError) => ({ error }));
    assert.ok(await eventually(() => secondPid !== undefined, 5_000), 'the second process\'s init runs');
    a.release();
    const closing = track(engine.closeSession(a.sessionId));
    assert.ok(await eventually(() => { clock.advance(2_000); return secondHookStarted; }, 5_000), 'the close hooks the second process');
    initGate.resolve();
    const outcome = await second;
    if ('lease' in outcome) granted = outcome.lease;
    assert.ok('error' in outcome, 'the request is refused');
    assert.equal(outcome.error.code, 'ERR_SESSION_CLOSED');
    hookGate.resolve();
    assert.ok(await eventually(() => closing.settled, 5_000));
    assert.deepEqual(seenByHook, [{}], 'init\'s vars did not come into the hooked process');
    assert.deepEqual(await r.redis.keys(`${r.prefix}s:*`), [], 'no session key left');
    assert.ok(await eventually(async () => (await r.redis.keys(`${r.prefix}nb:*`)).length === 0 || (await Promise.all((await r.redis.keys(`${r.prefix}nb:*`)).map((k) => r.redis.scard(k)))).every((n) => n === 0), 5_000), 'the process is not left among the node\'s running ones');
  } finally {
    initGate.resolve();
    hookGate.resolve();
    granted?.release();
    assert.ok(await settledAsTimePasses(clock, track(engine.stop())), 'the engine stops');
  }
});
