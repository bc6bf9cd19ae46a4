// Redis, the close run on the task's own node: a spawned task whose init ends while the close hooks the
// session's request process (first in its list; the drain gave up on the task at closeTimeoutMs) must be
// refused, as on the memory store (past its close's drain), not start and then be hooked while it runs:
// tasks.ts refuses only once handle.closing names its process, which the hook loop does when it gets to it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, memoryStore, type SessionError, type SessionStore } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { track } from './engine-harness.js';
import { deferred, eventually, settle } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { settledAsTimePasses } from './redis-crossing.js';

type Vars = Record<string, unknown>;

async function scenario(clock: ManualClock, store: SessionStore): Promise<{ ran: boolean; hookSawTaskRunning: boolean; refused: boolean }> {
  const initGate = deferred();
  const webHookGate = deferred();
  let webHookStarted = false;
  let taskRunning = false;
  let ran = false;
  let hookSawTaskRunning = false;
  const taskEnd = deferred();
  const engine = new SessionEngine<Vars>({
    clock, closeTimeoutMs: 10_000, store,
    init: (proc) => (proc.name === 'task' ? initGate.promise.then(() => ({ from: 'init' })) : {}),
    onClose: async (proc) => {
      if (proc.name === 'task') { if (taskRunning) hookSawTaskRunning = true; return; }
      webHookStarted = true;
      await webHookGate.promise;
    },
  });
  const errors: SessionError[] = [];
  engine.on('error', (e) => errors.push(e));
  try {
    const a = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
    a.run(() => a.proc.spawn('task', async () => { ran = true; taskRunning = true; await taskEnd.promise; taskRunning = false; }));
    a.release();
    await settle(20);
    const closing = track(engine.closeSession(a.sessionId));
    assert.ok(await eventually(() => { clock.advance(2_000); return webHookStarted; }, 5_000), 'the drain gave up; the request process\'s hook runs');
    initGate.resolve();
    await settle(20);
    webHookGate.resolve();
    await settle(20);
    taskEnd.resolve();
    assert.ok(await settledAsTimePasses(clock, closing), 'the close ends');
  } finally {
    initGate.resolve();
    webHookGate.resolve();
    taskEnd.resolve();
    assert.ok(await settledAsTimePasses(clock, track(engine.stop())), 'the engine stops');
  }
  return { ran, hookSawTaskRunning, refused: errors.some((e) => e.code === 'ERR_SESSION_TASK_FAILED') };
}

test('memory: a task whose init ends while its session\'s close hooks another process never runs', { timeout: 20_000 }, async () => {
  assert.deepEqual(await scenario(new ManualClock(), memoryStore()), { ran: false, hookSawTaskRunning: false, refused: true });
});

test('redis: a task whose init ends while its node\'s close hooks another process of the session never runs (refused), never hooked while it runs', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const client = await r.client();
  const seen = await scenario(new ManualClock(), createRedisStore({ redis: client, prefix: r.prefix, pollIntervalMs: 5, sweepIntervalMs: 1_000 }));
  assert.deepEqual(seen, { ran: false, hookSawTaskRunning: false, refused: true });
  assert.deepEqual(await r.redis.keys(`${r.prefix}s:*`), [], 'no session key left');
});
