// On the Redis store each request gets a process object of its own, rebuilt from Redis. One kept past
// its request (a timer, a promise chain after the response) stands for nothing once its session is
// closing or closed: as a torn-down process on the memory store, it says `closed`, and a lock or spawn
// on it fails with ERR_SESSION_CLOSED. Before, such a late tryLock won a lock no close would release
// (it stayed for the keys' lifetime, hours, and blocked every other session on that record).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type WebProcess } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { eventually } from './helpers.js';
import { redisForTest, type RedisForTest } from './redis-support.js';

const IP = '127.0.0.1';

/** An engine (a node) on the test's Redis. */
function nodeOn(r: RedisForTest): SessionEngine {
  return new SessionEngine({ clock: new ManualClock(), store: createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: 20 }) });
}

for (const closer of ['another node', 'the same node'] as const) {
  test(`Redis store: a process object kept past its request, its session then closed by ${closer}: a late tryLock or spawn fails with ERR_SESSION_CLOSED, leaving no lock`, { timeout: 20_000 }, async (t: TestContext) => {
    const r = await redisForTest(t);
    if (r === undefined) return;
    const a = nodeOn(r);
    const b = nodeOn(r);
    try {
      const lease = await a.acquire({ sessionId: undefined, ip: IP });
      const kept: WebProcess = lease.proc;
      lease.release();
      assert.equal(await (closer === 'another node' ? b : a).closeSession(lease.sessionId), true);
      assert.ok(await eventually(() => a.sessionProcessCount(lease.sessionId) === 0), 'its node heard of the close');
      await assert.rejects(kept.locks.tryLock('Stock', 7), { code: 'ERR_SESSION_CLOSED' });
      assert.throws(() => kept.spawn('late', async () => {}), { code: 'ERR_SESSION_CLOSED' });
      const other = await b.acquire({ sessionId: undefined, ip: IP }); // a live session that wants the record
      try {
        assert.equal(await other.proc.locks.lockedBy('Stock', 7), null);
        assert.equal(await other.proc.locks.tryLock('Stock', 7), true, 'the record is free for others');
      } finally {
        other.release();
      }
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });
}

test('Redis store: a process object kept past its request of a session still open is still that process: its lock is the process\'s, released when the session closes', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const engine = nodeOn(r);
  try {
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    const kept: WebProcess = lease.proc;
    lease.release();
    assert.equal(kept.closed, false);
    assert.equal(await kept.locks.tryLock('Stock', 8), true);
    assert.equal((await kept.locks.lockedBy('Stock', 8))?.sessionId, lease.sessionId);
    assert.equal(await engine.closeSession(lease.sessionId), true);
    assert.equal(await kept.locks.lockedBy('Stock', 8), null, 'released with the session');
  } finally {
    await engine.stop();
  }
});

test('Redis store: a lock taken by a process object kept past its request (so on no saved list) is renewed with its session by the process\'s next request, on another node too: it does not lapse while the session lives', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const a = nodeOn(r);
  const b = nodeOn(r);
  try {
    (await b.acquire({ sessionId: undefined, ip: IP })).release(); // b has joined the cluster and beaten
    const first = await a.acquire({ sessionId: undefined, ip: IP });
    const kept: WebProcess = first.proc;
    first.release();
    assert.equal(await kept.locks.tryLock('Stock', 9), true);
    const lockKeys = (await r.redis.keys(`${r.prefix}*lock*`));
    assert.equal(lockKeys.length, 2, `the lock and its process's set: ${lockKeys.join(', ')}`);
    // As if the session had been busy for most of a key lifetime since the lock was taken.
    for (const key of lockKeys) await r.redis.pexpire(key, 5_000);
    const next = await b.acquire({ sessionId: first.sessionId, ip: IP });
    assert.equal(next.sessionId, first.sessionId);
    assert.equal(next.proc.processId, kept.processId);
    next.release();
    // Read once the release has landed, before a heartbeat of b (which extends its busy sessions' keys) could.
    assert.ok(await eventually(async () => (await r.redis.hget(`${r.prefix}s:${first.sessionId}`, `b:${kept.processId}`)) === '0'), 'the release landed');
    for (const key of lockKeys) {
      const ttlMs = await r.redis.pttl(key);
      assert.ok(ttlMs > 60_000, `${key}: ${ttlMs} ms left, not renewed with the session`);
    }
    assert.equal((await kept.locks.lockedBy('Stock', 9))?.sessionId, first.sessionId);
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});

test('Redis store: a request whose session is gone from Redis when it ends (closed or discarded without it) does not extend the locks it took for another key lifetime: they keep the expiry they had', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const engine = nodeOn(r);
  try {
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    assert.equal(await lease.proc.locks.tryLock('Stock', 8), true);
    const lockKeys = (await r.redis.keys(`${r.prefix}*`)).filter((k) => k.includes('Stock'));
    assert.ok(lockKeys.length > 0, 'the lock has a key');
    for (const key of lockKeys) await r.redis.pexpire(key, 60_000);
    // The session leaves Redis under the running request (what a close or the repair ends with).
    await r.redis.del(`${r.prefix}s:${lease.sessionId}`);
    lease.release();
    await engine.stop();
    for (const key of lockKeys) {
      const ttlMs = await r.redis.pttl(key);
      assert.ok(ttlMs <= 60_000, `${key}: ${ttlMs} ms, not a key lifetime`);
    }
  } finally {
    await engine.stop();
  }
});
