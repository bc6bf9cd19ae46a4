// A node that sets, before its store has started, an option the cluster's options cannot go with
// (cookieSameSite 'None' while the cluster holds cookieSecure false) has its setOption taken back and
// reported once (ERR_SESSION_INVALID_OPTION, README's error table), not also as Redis being away.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type SessionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { IP, node, stopAll, type Vars } from './redis-crossing.js';

test('redis: an option set before the start that the cluster\'s options cannot go with is reported once, as taken back, never as the store unavailable', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const b = await node(r, clock);
  const client = await r.client();
  let a: SessionEngine<Vars> | undefined;
  try {
    (await b.engine.acquire({ sessionId: undefined, ip: IP })).release();
    b.engine.setOption('cookieSecure', false);
    assert.ok(await eventually(async () => (await r.redis.hget(`${r.prefix}opts`, 'cookieSecure')) === 'false', 3_000), 'b wrote it');
    a = new SessionEngine<Vars>({ clock, closeTimeoutMs: 10_000, store: createRedisStore({ redis: client, prefix: r.prefix, pollIntervalMs: 5, sweepIntervalMs: 1_000 }) });
    const errors: SessionError[] = [];
    a.on('error', (error) => errors.push(error));
    a.setOption('cookieSameSite', 'None');
    (await a.acquire({ sessionId: undefined, ip: IP })).release();
    const engine = a;
    assert.ok(await eventually(() => engine.getOption('cookieSecure') === false && engine.getOption('cookieSameSite') !== 'None', 3_000), 'a took the cluster\'s options');
    assert.deepEqual(errors.map((e) => e.code), ['ERR_SESSION_INVALID_OPTION'], errors.map((e) => `${e.code}: ${e.message}`).join('; '));
    assert.equal(engine.stats().storeErrors, 1);
  } finally {
    await stopAll(clock, [], undefined, b, ...(a === undefined ? [] : [{ engine: a, client, errors: [], hooked: [] }]));
  }
});
