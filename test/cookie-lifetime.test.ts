// The cookie's lifetime (inactiveSessionTimeoutMs) changed at run time, on both stores: a lowered one
// applies to live sessions at once; a raised one from each session's next request on, as the browser's
// cookie carries the Expires it was given. So a cookie that has expired never comes back to life, even
// when its session is still open (its process timeout is longer) and the lifetime is raised afterwards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type SessionEngineOptions } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { redisForTest } from './redis-support.js';
import { storeChoices } from './store-choices.js';

type Vars = { secret?: string };
const MINUTE = 60_000;


const stores = storeChoices();

for (const [name, storeFor] of stores) {
  test(`${name}: a cookie that expired stays dead when the lifetime is raised afterwards; a live session gets the raised lifetime from its next request on`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const options: SessionEngineOptions<Vars> = { clock, inactiveSessionTimeoutMs: 10 * MINUTE, inactiveProcessTimeoutMs: 480 * MINUTE };
    const engine = new SessionEngine<Vars>({ ...options, ...choice.options });
    try {
      const old = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
      old.proc.vars.secret = 'old';
      old.release();
      clock.advance(5 * MINUTE);
      const live = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
      live.release();
      clock.advance(15 * MINUTE); // the first cookie expired 10 minutes ago; the session is still open
      const fresh = await engine.acquire({ sessionId: old.sessionId, ip: '127.0.0.1' });
      assert.notEqual(fresh.sessionId, old.sessionId, 'an expired cookie gets a new session');
      fresh.release();
      engine.setOption('inactiveSessionTimeoutMs', 480 * MINUTE);
      const again = await engine.acquire({ sessionId: old.sessionId, ip: '127.0.0.1' });
      assert.notEqual(again.sessionId, old.sessionId, 'raising the lifetime does not bring the expired cookie back');
      assert.equal(again.proc.vars.secret, undefined);
      again.release();
      // The second session's cookie (given 10 minutes at 5 min) expired at 15 min too: dead as well.
      const second = await engine.acquire({ sessionId: live.sessionId, ip: '127.0.0.1' });
      assert.notEqual(second.sessionId, live.sessionId);
      second.release();
      // A session whose cookie is live gets the raised lifetime with its next request.
      const next = await engine.acquire({ sessionId: second.sessionId, ip: '127.0.0.1' });
      assert.equal(next.sessionId, second.sessionId);
      const cookie = next.cookie();
      assert.equal(cookie.action === 'set' ? cookie.expiresAtMs : undefined, clock.now() + 480 * MINUTE);
      next.release();
      // A lowered lifetime applies at once to the live ones.
      engine.setOption('inactiveSessionTimeoutMs', 1 * MINUTE);
      assert.equal(engine.sessionExpiration(second.sessionId)?.getTime(), clock.now() + 1 * MINUTE);
    } finally {
      await engine.stop();
    }
  });
}

test('memory store: a cookie that expired under a lowered lifetime stays dead when the lifetime is restored (WEB SET OPTION 72 to 0 included)', { timeout: 20_000 }, async () => {
  const clock = new ManualClock();
  const engine = new SessionEngine<Vars>({ clock, inactiveSessionTimeoutMs: 480 * MINUTE });
  try {
    const old = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
    old.proc.vars.secret = 'old';
    old.release();
    engine.setOption('inactiveSessionTimeoutMs', 5 * MINUTE);
    clock.advance(10 * MINUTE);
    engine.setOption('inactiveSessionTimeoutMs', 480 * MINUTE);
    const again = await engine.acquire({ sessionId: old.sessionId, ip: '127.0.0.1' });
    assert.notEqual(again.sessionId, old.sessionId, 'the cookie expired 5 minutes ago: it stays dead');
    assert.equal(again.proc.vars.secret, undefined);
    again.release();
  } finally {
    await engine.stop();
  }
});

test('Redis store, rolling upgrade: a request entered by a node of an earlier version (it moves the last request, not the lifetime given then) is judged by the current lifetime, not by a lifetime given at an older request', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const engine = new SessionEngine<Vars>({ clock, inactiveSessionTimeoutMs: 10 * MINUTE, store: createRedisStore({ url: r.url, prefix: r.prefix }) });
  try {
    const first = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
    first.release();
    engine.setOption('inactiveSessionTimeoutMs', 480 * MINUTE);
    clock.advance(8 * MINUTE);
    // What an ENTER of the earlier version writes: the last request moves, the lifetime field does not.
    const key = `${r.prefix}s:${first.sessionId}`;
    for (let i = 0; i < 100 && (await r.redis.hget(key, 'b:r1')) !== '0'; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    await r.redis.hset(key, 'lr', String(clock.now()));
    clock.advance(12 * MINUTE); // 20 min after the first request, 12 after the last: within 480
    const again = await engine.acquire({ sessionId: first.sessionId, ip: '127.0.0.1' });
    again.release();
    assert.equal(again.sessionId, first.sessionId, 'the browser holds an 8-hour cookie from that request');
  } finally {
    await engine.stop();
  }
});
