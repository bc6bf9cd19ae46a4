// Redis, the close run on the request's own node: once the close's drain has given up on a request whose
// init still runs (closeTimeoutMs), that request is refused when its init ends (closer.pastDrain), as on
// the memory store. A close that starts over after a Redis error (closer.ts #runUntilDone) set
// drainOver back to false: an init ending in the retry's window (its wait, its first load, its new drain)
// was granted, its request ran in the closing session, and the retried close hooked it live while it ran.
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type RequestLease, type SessionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { track } from './engine-harness.js';
import { deferred, eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { settledAsTimePasses, wrapScript } from './redis-crossing.js';

type Vars = Record<string, unknown>;

test('redis: a request whose init ends once its close\'s drain gave up is refused, also while that close starts over after a Redis error', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const client = await r.client();
  const initGate = deferred();
  let pid: string | undefined;
  let requestRunning = false;
  let hookSawRequestRunning = false;
  let step: 'before' | 'fail' | 'retry' | 'done' = 'before';
  const engine = new SessionEngine<Vars>({
    clock, closeTimeoutMs: 10_000,
    store: createRedisStore({ redis: client, prefix: r.prefix, pollIntervalMs: 5, sweepIntervalMs: 1_000 }),
    init: (proc) => { pid = proc.processId; return initGate.promise.then(() => ({ from: 'init' })); },
    onClose: (proc) => { if (proc.processId === pid && requestRunning) hookSawRequestRunning = true; },
  });
  engine.on('error', (e) => { if (e.code === 'ERR_SESSION_DRAIN_TIMEOUT' && step === 'before') step = 'fail'; });
  // The drain gives up; its reload fails (Redis away): the close starts over, and its first load's reply
  // comes after init has ended.
  wrapScript(client, 'lwsLoadClosingBuffer', (load) => async (...args) => {
    if (step === 'fail') {
      step = 'retry';
      throw new Error('connection lost');
    }
    const reply = await load(...args);
    if (step === 'retry') {
      step = 'done';
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
    assert.equal(step, 'done', 'the close started over after its reload failed');
    assert.equal(hookSawRequestRunning, false, 'the hook never ran while the request ran in its process');
    assert.ok(outcome !== undefined && 'error' in outcome, `the request is refused (${outcome !== undefined && 'lease' in outcome ? 'granted in the closing session' : ''})`);
    assert.equal(outcome.error.code, 'ERR_SESSION_CLOSED');
    // closeSession rejected at the close's first Redis error; the close goes on to its end.
    assert.ok(await eventually(async () => { clock.advance(2_000); return (await r.redis.keys(`${r.prefix}s:*`)).length === 0; }, 5_000), 'the close ends: no session key left');
  } finally {
    initGate.resolve();
    requestRunning = false;
    granted?.release();
    assert.ok(await settledAsTimePasses(clock, track(engine.stop())), 'the engine stops');
  }
});
