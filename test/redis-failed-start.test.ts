// A node whose start fails (Redis away when it came up: its first heartbeat does not land) is heard of
// at once on 'error', before any request comes, and once however many attempts fail; the next request
// tries the start again and is served once Redis answers (src/redis/node-start.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type SessionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { IP, wrapScript, type Vars } from './redis-crossing.js';

test('redis: a start that fails is said once on \'error\' before any request; requests get 503 until Redis answers, then the start succeeds', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const client = await r.client();
  const engine = new SessionEngine<Vars>({ clock: new ManualClock(), closeTimeoutMs: 5_000, store: createRedisStore({ redis: client, prefix: r.prefix, pollIntervalMs: 5 }) });
  // Wrapped once the store has defined its scripts; the start reaches its heartbeat only after a round trip.
  let away = true;
  let beats = 0;
  wrapScript(client, 'lwsHeartbeat', (original) => async (...args) => {
    beats++;
    if (away) throw new Error('connection lost');
    return original(...args);
  });
  const errors: SessionError[] = [];
  engine.on('error', (error) => errors.push(error));
  try {
    assert.ok(await eventually(() => errors.length > 0, 5_000), 'said without a request');
    assert.equal(errors[0]!.code, 'ERR_SESSION_STORE_UNAVAILABLE');
    assert.match(errors[0]!.message, /could not join its cluster.*connection lost/);
    for (let i = 0; i < 2; i++) {
      await assert.rejects(engine.acquire({ sessionId: undefined, ip: IP }), (error: SessionError) => error.code === 'ERR_SESSION_STORE_UNAVAILABLE');
    }
    assert.equal(beats, 3, 'each request tried the start again');
    assert.equal(errors.filter((e) => e.message.includes('could not join')).length, 1, 'said once');
    assert.equal(engine.stats().rejected.storeUnavailable, 2, 'each refused request counted');
    away = false;
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    assert.equal(lease.sessionId.length, 36, 'served once Redis answers');
    lease.release();
  } finally {
    away = false;
    await engine.stop();
  }
});
