// Redis, the close run on the request's own node, a session of two processes: a request whose init ends
// while the close hooks the session's OTHER process (the drain gave up on it at closeTimeoutMs) must be
// refused as the memory store refuses it (its close is past its drain), not run and then be hooked live
// under its own request: handle.closing names a process only once the hook loop reaches it.
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, memoryStore, type RequestLease, type SessionError, type SessionStore } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { track } from './engine-harness.js';
import { deferred, eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { settledAsTimePasses, wrapScript } from './redis-crossing.js';

type Vars = Record<string, unknown>;

async function scenario(clock: ManualClock, store: SessionStore): Promise<{ outcome: string; hookSawRequestRunning: boolean; tornDown: boolean }> {
  const initGate = deferred();
  const firstHookGate = deferred();
  let inits = 0;
  let firstPid: string | undefined;
  let secondPid: string | undefined;
  let secondProc: { readonly closed: boolean } | undefined;
  let firstHookStarted = false;
  let requestRunning = false;
  let hookSawRequestRunning = false;
  const engine = new SessionEngine<Vars>({
    clock, closeTimeoutMs: 10_000, processesPerSession: 2, store,
    init: (proc) => {
      if (++inits === 1) { firstPid = proc.processId; return {}; }
      secondPid = proc.processId;
      secondProc = proc;
      return initGate.promise.then(() => ({ from: 'init' }));
    },
    onClose: async (proc) => {
      if (proc.processId === firstPid) {
        firstHookStarted = true;
        await firstHookGate.promise;
      } else if (proc.processId === secondPid && requestRunning) hookSawRequestRunning = true;
    },
  });
  let granted: RequestLease<Vars> | undefined;
  let outcome = '';
  try {
    const a = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
    const second = engine.acquire({ sessionId: a.sessionId, ip: '127.0.0.1' }).then((lease) => ({ lease }), (error: SessionError) => ({ error }));
    assert.ok(await eventually(() => secondPid !== undefined, 5_000), 'the second process\'s init runs');
    a.release();
    const closing = track(engine.closeSession(a.sessionId));
    assert.ok(await eventually(() => { clock.advance(2_000); return firstHookStarted; }, 5_000), 'the drain gave up, the first process\'s hook runs');
    initGate.resolve();
    const result = await second;
    if ('lease' in result) {
      granted = result.lease;
      // The memory store's refusal goes on in a new session (README, ERR_SESSION_CLOSED): fine.
      requestRunning = result.lease.sessionId === a.sessionId;
      outcome = requestRunning ? 'granted in the closing session' : 'in a new session';
    } else outcome = result.error.code;
    firstHookGate.resolve();
    assert.ok(await settledAsTimePasses(clock, closing), 'the close ends');
  } finally {
    initGate.resolve();
    firstHookGate.resolve();
    requestRunning = false;
    granted?.release();
    assert.ok(await settledAsTimePasses(clock, track(engine.stop())), 'the engine stops');
  }
  return { outcome, hookSawRequestRunning, tornDown: secondProc?.closed === true };
}

test('memory: a request whose init ends while its session\'s close hooks another process does not run in that session (it goes on in a new one)', { timeout: 20_000 }, async () => {
  const clock = new ManualClock();
  const seen = await scenario(clock, memoryStore());
  assert.deepEqual(seen, { outcome: 'in a new session', hookSawRequestRunning: false, tornDown: true });
});

test('redis: a request whose init ends while its node\'s close hooks another process of the session is refused (ERR_SESSION_CLOSED), never hooked while it runs', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const client = await r.client();
  const seen = await scenario(clock, createRedisStore({ redis: client, prefix: r.prefix, pollIntervalMs: 5, sweepIntervalMs: 1_000 }));
  assert.deepEqual(seen, { outcome: 'ERR_SESSION_CLOSED', hookSawRequestRunning: false, tornDown: true });
  assert.deepEqual(await r.redis.keys(`${r.prefix}s:*`), [], 'no session key left');
  for (const key of await r.redis.keys(`${r.prefix}nb:*`)) assert.equal(await r.redis.scard(key), 0, 'no process left among a node\'s running ones');
});

test('redis: a request whose init ends just after its node\'s close gave up waiting for it (before the hook loop names its process) is refused, never hooked while it runs', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const client = await r.client();
  const initGate = deferred();
  let pid: string | undefined;
  let initProc: { readonly closed: boolean } | undefined;
  let requestRunning = false;
  let hookSawRequestRunning = false;
  let armed = false;
  const engine = new SessionEngine<Vars>({
    clock, closeTimeoutMs: 10_000,
    store: createRedisStore({ redis: client, prefix: r.prefix, pollIntervalMs: 5, sweepIntervalMs: 1_000 }),
    init: (proc) => { pid = proc.processId; initProc = proc; return initGate.promise.then(() => ({ from: 'init' })); },
    onClose: (proc) => { if (proc.processId === pid && requestRunning) hookSawRequestRunning = true; },
  });
  // The drain gives up (reported), then loads the session again: init ends while that reply is on its way.
  engine.on('error', (e) => { if (e.code === 'ERR_SESSION_DRAIN_TIMEOUT') armed = true; });
  wrapScript(client, 'lwsLoadClosingBuffer', (load) => async (...args) => {
    const reply = await load(...args);
    if (armed) {
      armed = false;
      initGate.resolve();
      await delay(30);
    }
    return reply;
  });
  let granted: RequestLease<Vars> | undefined;
  try {
    const first = engine.acquire({ sessionId: undefined, ip: '127.0.0.1' }).then((lease) => ({ lease }), (error: SessionError) => ({ error }));
    assert.ok(await eventually(() => pid !== undefined, 5_000), 'init runs');
    const ids = await r.redis.zrange(`${r.prefix}open`, '0', '-1');
    assert.equal(ids.length, 1);
    const closing = track(engine.closeSession(ids[0]!));
    let outcome: Awaited<typeof first> | undefined;
    void first.then((o) => {
      outcome = o;
      if ('lease' in o) {
        granted = o.lease;
        requestRunning = true;
      }
    });
    assert.ok(await settledAsTimePasses(clock, { get settled() { return outcome !== undefined && closing.settled; } }), 'the close ends, the request has its answer');
    assert.equal(hookSawRequestRunning, false, 'the hook never ran while the request ran in its process');
    assert.ok(outcome !== undefined && 'error' in outcome, 'the request is refused');
    assert.equal(outcome.error.code, 'ERR_SESSION_CLOSED');
    assert.equal(initProc?.closed, true, 'its process object is torn down');
    assert.deepEqual(await r.redis.keys(`${r.prefix}s:*`), [], 'no session key left');
    for (const key of await r.redis.keys(`${r.prefix}nb:*`)) assert.equal(await r.redis.scard(key), 0, 'no process left among the node\'s running ones');
  } finally {
    initGate.resolve();
    requestRunning = false;
    granted?.release();
    assert.ok(await settledAsTimePasses(clock, track(engine.stop())), 'the engine stops');
  }
});
