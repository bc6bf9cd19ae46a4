// docs/redis.md: "A release moves the expiry of its process's record locks with the session's keys (a
// live session's locks never expire)"; the memory store renews, at the end of each request, the locks of
// every process of the session holding some ("processesPerSession > 1: requests one at a time all run
// on its first free process; a task's locks too": scheduler.ts #release). On the Redis store a session of
// two processes whose requests then come one at a time runs them all on its first process: a lock its
// second process took (during two requests at once) must not lapse while the session lives and works.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';

const IP = '127.0.0.1';

test('Redis store: processesPerSession 2, a lock the second process took is renewed with the session by the requests that run on the first one', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const engine = new SessionEngine({ clock: new ManualClock(), processesPerSession: 2, store: createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: 20 }) });
  try {
    const one = await engine.acquire({ sessionId: undefined, ip: IP });
    const two = await engine.acquire({ sessionId: one.sessionId, ip: IP }); // a second process, at once
    assert.notEqual(one.proc.processId, two.proc.processId);
    assert.equal(await two.proc.locks.tryLock('Stock', 11), true);
    two.release();
    one.release();
    const hash = `${r.prefix}s:${one.sessionId}`;
    assert.ok(await eventually(async () => (await r.redis.hget(hash, `b:${one.proc.processId}`)) === '0' && (await r.redis.hget(hash, `b:${two.proc.processId}`)) === '0'), 'both releases landed');
    const lockKeys = (await r.redis.keys(`${r.prefix}*lock*`));
    assert.equal(lockKeys.length, 2, `the lock and its process's set: ${lockKeys.join(', ')}`);
    // As if the session had worked, one request at a time, for most of a key lifetime since.
    for (const key of lockKeys) await r.redis.pexpire(key, 5_000);
    const next = await engine.acquire({ sessionId: one.sessionId, ip: IP });
    assert.equal(next.proc.processId, one.proc.processId, 'a request alone runs on the first process');
    next.release();
    assert.ok(await eventually(async () => (await r.redis.hget(hash, `b:${one.proc.processId}`)) === '0'), 'the release landed');
    for (const key of lockKeys) {
      const ttlMs = await r.redis.pttl(key);
      assert.ok(ttlMs > 60_000, `${key}: ${ttlMs} ms left, not renewed with the session`);
    }
  } finally {
    await engine.stop();
  }
});
