// Redis, the close run on the task's own node: a spawned task whose init outlasts the drain is refused
// (tasks.ts, closer.pastDrain) and, as on the memory store, still hooked once (with no context) by the
// close. Refused before the hook loop has named it, it released its process as a task that leaves its
// session ('leaves' with no state: RELEASE takes it out of the session's list). The close's first run
// hooks it from the list it loaded before; but a close that starts over (a Redis error during its hooks:
// closer.ts retries from what Redis holds) no longer finds it, and it is never hooked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, memoryStore, type SessionError, type SessionStore } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { track } from './engine-harness.js';
import { deferred, eventually, settle } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { settledAsTimePasses, wrapScript } from './redis-crossing.js';

type Vars = Record<string, unknown>;

async function scenario(clock: ManualClock, store: SessionStore): Promise<{ hooks: string[]; ran: boolean; refused: boolean }> {
  const initGate = deferred();
  const webHookGate = deferred();
  let webHookStarted = false;
  let ran = false;
  const hooks: string[] = [];
  const engine = new SessionEngine<Vars>({
    clock, closeTimeoutMs: 10_000, store,
    init: (proc) => (proc.name === 'task' ? initGate.promise.then(() => ({ from: 'init' })) : {}),
    onClose: async (proc) => {
      hooks.push(proc.name === 'task' ? 'task' : 'web');
      if (proc.name === 'task') return;
      webHookStarted = true;
      await webHookGate.promise;
    },
  });
  const errors: SessionError[] = [];
  engine.on('error', (e) => errors.push(e));
  try {
    const a = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
    a.run(() => a.proc.spawn('task', async () => { ran = true; }));
    a.release();
    await settle(20);
    const closing = track(engine.closeSession(a.sessionId));
    assert.ok(await eventually(() => { clock.advance(2_000); return webHookStarted; }, 5_000), 'the drain gave up; the request process\'s hook runs');
    // The task's init ends during that hook: refused (past the drain), its release lands.
    initGate.resolve();
    await settle(50);
    webHookGate.resolve();
    assert.ok(await settledAsTimePasses(clock, closing), 'the close ends');
  } finally {
    initGate.resolve();
    webHookGate.resolve();
    assert.ok(await settledAsTimePasses(clock, track(engine.stop())), 'the engine stops');
  }
  return { hooks: hooks.sort(), ran, refused: errors.some((e) => e.code === 'ERR_SESSION_TASK_FAILED') };
}

test('memory: a task refused past the drain is hooked once', { timeout: 20_000 }, async () => {
  assert.deepEqual(await scenario(new ManualClock(), memoryStore()), { hooks: ['task', 'web'], ran: false, refused: true });
});

test('redis: a task refused past the drain is hooked once, also by a close that starts over after a Redis error in its hooks', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const client = await r.client();
  const store = createRedisStore({ redis: client, prefix: r.prefix, pollIntervalMs: 5, sweepIntervalMs: 1_000 });
  // The first hook's mark fails as with Redis away (the close retries from what Redis holds).
  let failures = 1;
  const wrapWhenDefined = (): void => wrapScript(client, 'lwsHooked', (hooked) => async (...args) => {
    if (failures > 0) { failures--; throw new Error('connection lost'); }
    return hooked(...args);
  });
  if ((client as unknown as Record<string, unknown>).lwsHooked !== undefined) wrapWhenDefined();
  else {
    // Defined once the engine attaches the store: wrapped before its first close.
    const define = client.defineCommand.bind(client);
    client.defineCommand = ((name: string, ...rest: unknown[]) => {
      (define as (...a: unknown[]) => void)(name, ...rest);
      if (name === 'lwsHooked') wrapWhenDefined();
    }) as typeof client.defineCommand;
  }
  const seen = await scenario(new ManualClock(), store);
  assert.equal(failures, 0, 'the hook\'s mark failed once');
  assert.deepEqual(seen, { hooks: ['task', 'web'], ran: false, refused: true });
  assert.deepEqual(await r.redis.keys(`${r.prefix}s:*`), [], 'no session key left');
});

test('redis: the same without a Redis error: hooked once', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const client = await r.client();
  const seen = await scenario(new ManualClock(), createRedisStore({ redis: client, prefix: r.prefix, pollIntervalMs: 5, sweepIntervalMs: 1_000 }));
  assert.deepEqual(seen, { hooks: ['task', 'web'], ran: false, refused: true });
});
