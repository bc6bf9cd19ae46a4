// An option set while the store's start fails is written by the next start (redis-option-before-failed-
// start). Should the cluster meanwhile hold an option it cannot go with (cookieSameSite 'None' here,
// cookieSecure false there), the next start takes it back and reports it once, ERR_SESSION_INVALID_OPTION,
// as for an option set before a first start (redis-option-conflict-at-start): the cluster's value is not
// refused here as Redis being away.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type SessionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { IP, node, stopAll, wrapScript, type Vars } from './redis-crossing.js';

test('redis: an option set while the start fails, that the cluster\'s options cannot go with by the next start, is reported once as taken back, never as the store unavailable', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const b = await node(r, clock);
  const client = await r.client();
  const a = new SessionEngine<Vars>({ clock, closeTimeoutMs: 10_000, store: createRedisStore({ redis: client, prefix: r.prefix, pollIntervalMs: 5, sweepIntervalMs: 1_000 }) });
  const errors: SessionError[] = [];
  a.on('error', (error) => errors.push(error));
  // The first start's heartbeat fails (Redis away for it); the next start's goes through.
  let beats = 0;
  wrapScript(client, 'lwsHeartbeat', (original) => async (...args) => {
    if (++beats === 1) throw new Error('connection lost');
    return original(...args);
  });
  try {
    a.setOption('cookieSameSite', 'None');
    assert.ok(await eventually(() => beats === 1 && errors.length > 0, 3_000), `the first start failed: ${beats} heartbeat(s), ${errors.length} error(s)`);
    const before = errors.length;
    (await b.engine.acquire({ sessionId: undefined, ip: IP })).release();
    b.engine.setOption('cookieSecure', false);
    assert.ok(await eventually(async () => (await r.redis.hget(`${r.prefix}opts`, 'cookieSecure')) === 'false', 3_000), 'b wrote it');
    (await a.acquire({ sessionId: undefined, ip: IP })).release(); // the start tried again, and done
    assert.ok(await eventually(() => a.getOption('cookieSecure') === false && a.getOption('cookieSameSite') !== 'None', 3_000), 'a took the cluster\'s options');
    assert.ok(await eventually(() => errors.length > before, 3_000), 'the take-back was reported');
    const later = errors.slice(before);
    assert.deepEqual(later.map((e) => e.code), ['ERR_SESSION_INVALID_OPTION'], later.map((e) => `${e.code}: ${e.message}`).join('; '));
  } finally {
    await stopAll(clock, [], undefined, { engine: a, client, errors: [], hooked: [] }, b);
  }
});
