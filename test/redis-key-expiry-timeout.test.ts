// A session key expires by Redis's clock (graceMs after the timeout), while timeouts are decided by the
// sweeping node's clock against the last activity the releasing node wrote with its own. When the clock
// that wrote is ahead of every clock that sweeps by more than graceMs (skewed nodes, a node's clock set
// back, a now()-only clock standing still), the key would expire before any sweep claims the session,
// which would then vanish without its hook. The sweep times out an idle session whose key is about to
// expire, whatever the clocks say. Here the key's remaining life is cut in Redis (what such a skew leads
// to), and session time moves only by the ManualClock: the la-based timeout is hours away.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type CloseEvent, type SessionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { deferred, eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';

const IP = '127.0.0.1';
const SWEEP_INTERVAL_MS = 1_000;

test('Redis store: an idle session whose key is about to expire (its last activity written by a clock far ahead) is timed out by the next sweep, hooked with its vars; a session whose key has its life is left open', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const hooked: Array<{ id: string; n: number | undefined }> = [];
  const engine = new SessionEngine<{ n?: number }>({
    clock, init: () => ({}),
    onClose: (proc) => { hooked.push({ id: proc.sessionId, n: proc.vars.n }); },
    store: createRedisStore({ url: r.url, prefix: r.prefix, sweepIntervalMs: SWEEP_INTERVAL_MS, pollIntervalMs: 20 }),
  });
  const errors: SessionError[] = [];
  const closes: CloseEvent[] = [];
  engine.on('error', (error) => errors.push(error));
  engine.on('close', (event) => closes.push(event));
  try {
    const ids: string[] = [];
    for (const n of [1, 2]) {
      const lease = await engine.acquire({ sessionId: undefined, ip: IP });
      lease.proc.vars.n = n;
      lease.release();
      ids.push(lease.sessionId);
      assert.ok(await eventually(async () => (await r.redis.zcard(`${r.prefix}lru`)) === n), `session ${n} went idle`);
    }
    const [first, second] = ids as [string, string];
    // The first session went idle first: its key expires first. 2 s left, under half of graceMs (60 s).
    await r.redis.pexpire(`${r.prefix}s:${first}`, 2_000);

    clock.advance(SWEEP_INTERVAL_MS);
    assert.ok(await eventually(() => closes.length === 1), 'the session about to lose its key is closed');
    assert.deepEqual(hooked, [{ id: first, n: 1 }], 'with the vars its last request left');
    assert.deepEqual(closes.map((c) => [c.sessionId, c.reason]), [[first, 'timeout']]);
    assert.equal(engine.stats().closed.timeout, 1);

    clock.advance(SWEEP_INTERVAL_MS);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(await r.redis.zscore(`${r.prefix}open`, second) !== null, true, 'the other session, its key far from expiry, stays open');
    assert.equal(hooked.length, 1);
  } finally {
    await engine.stop();
  }
  assert.deepEqual(errors, []);
});

test('Redis store: a session timed out because its key is about to expire keeps its record locks for its hook: the claim gives its lock keys a full lifetime too', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const hookStarted = deferred();
  const hookMayEnd = deferred();
  const engine = new SessionEngine({
    clock, init: () => ({}),
    onClose: async () => { hookStarted.resolve(); await hookMayEnd.promise; },
    store: createRedisStore({ url: r.url, prefix: r.prefix, sweepIntervalMs: SWEEP_INTERVAL_MS, pollIntervalMs: 20 }),
  });
  const errors: SessionError[] = [];
  engine.on('error', (error) => errors.push(error));
  try {
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    assert.equal(await lease.proc.locks.tryLock('Stock', 1), true);
    lease.release();
    assert.ok(await eventually(async () => (await r.redis.zcard(`${r.prefix}lru`)) === 1), 'idle');
    // The release touched the locks with the key's lifetime: a clock far ahead leaves them all 2 s.
    const lockKeys = [...await r.redis.keys(`${r.prefix}lock:*`), ...await r.redis.keys(`${r.prefix}plocks:*`)];
    assert.equal(lockKeys.length, 2, 'the lock and its process\'s set');
    for (const key of [`${r.prefix}s:${lease.sessionId}`, ...lockKeys]) await r.redis.pexpire(key, 2_000);

    clock.advance(SWEEP_INTERVAL_MS);
    await hookStarted.promise;
    for (const key of lockKeys) assert.ok(await r.redis.pttl(key) > 60_000, `${key} lives through the hook: ${await r.redis.pttl(key)} ms left`);
    const other = await engine.acquire({ sessionId: undefined, ip: IP });
    assert.equal(await other.proc.locks.tryLock('Stock', 1), false, 'the record is still the closing session\'s');
    other.release();
  } finally {
    hookMayEnd.resolve();
    await engine.stop();
  }
  assert.deepEqual(errors, []);
});

test('Redis store: a session whose key is about to expire behind one whose key has a long life at the head of lru (a lowered timeout, a process freed from a dead node) is timed out too', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const closes: CloseEvent[] = [];
  const engine = new SessionEngine({
    clock, init: () => ({}),
    store: createRedisStore({ url: r.url, prefix: r.prefix, sweepIntervalMs: SWEEP_INTERVAL_MS, pollIntervalMs: 20 }),
  });
  engine.on('close', (event) => closes.push(event));
  try {
    const ids: string[] = [];
    for (const n of [1, 2]) {
      const lease = await engine.acquire({ sessionId: undefined, ip: IP });
      lease.release();
      ids.push(lease.sessionId);
      assert.ok(await eventually(async () => (await r.redis.zcard(`${r.prefix}lru`)) === n));
    }
    const [first, second] = ids as [string, string];
    await r.redis.pexpire(`${r.prefix}s:${second}`, 2_000); // the first, at the head, keeps its 8 h
    clock.advance(SWEEP_INTERVAL_MS);
    assert.ok(await eventually(() => closes.length === 1, 3_000), 'the second session is closed');
    assert.deepEqual(closes.map((c) => [c.sessionId, c.reason]), [[second, 'timeout']]);
    assert.notEqual(await r.redis.zscore(`${r.prefix}open`, first), null, 'the first stays open');
  } finally {
    await engine.stop();
  }
});

// Whatever claims a session whose keys ran short (its last write by a clock far ahead, or long ago),
// its hook needs them: every claim gives the session's keys and its locks a full lifetime.
for (const path of ['timeout by the clock', 'closeSession', 'eviction', 'stop'] as const) {
  test(`Redis store: a session whose keys have seconds left, claimed by ${path}, keeps its keys and record locks for its hook`, { timeout: 20_000 }, async (t: TestContext) => {
    const r = await redisForTest(t);
    if (r === undefined) return;
    const clock = new ManualClock();
    const hookStarted = deferred();
    const hookMayEnd = deferred();
    const timeoutMs = 10 * 60_000;
    const engine = new SessionEngine({
      clock, init: () => ({}), inactiveProcessTimeoutMs: timeoutMs, inactiveSessionTimeoutMs: timeoutMs, maxSessions: path === 'eviction' ? 1 : 100,
      onClose: async () => { hookStarted.resolve(); await hookMayEnd.promise; },
      store: createRedisStore({ url: r.url, prefix: r.prefix, sweepIntervalMs: SWEEP_INTERVAL_MS, pollIntervalMs: 20, onStop: 'close' }),
    });
    const errors: SessionError[] = [];
    engine.on('error', (error) => errors.push(error));
    let stopping: Promise<void> | undefined;
    try {
      const lease = await engine.acquire({ sessionId: undefined, ip: IP });
      assert.equal(await lease.proc.locks.tryLock('Stock', 1), true);
      lease.release();
      assert.ok(await eventually(async () => (await r.redis.zcard(`${r.prefix}lru`)) === 1), 'idle');
      const keys = [`${r.prefix}s:${lease.sessionId}`, ...await r.redis.keys(`${r.prefix}lock:*`), ...await r.redis.keys(`${r.prefix}plocks:*`)];
      assert.equal(keys.length, 3, 'the session, its lock and its process\'s set');
      for (const key of keys) await r.redis.pexpire(key, 2_000);

      if (path === 'timeout by the clock') clock.advance(timeoutMs + SWEEP_INTERVAL_MS);
      if (path === 'closeSession') void engine.closeSession(lease.sessionId);
      if (path === 'eviction') (await engine.acquire({ sessionId: undefined, ip: IP })).release();
      if (path === 'stop') stopping = engine.stop();
      await hookStarted.promise;
      for (const key of keys) assert.ok(await r.redis.pttl(key) > 60_000, `${key} lives through the hook: ${await r.redis.pttl(key)} ms left`);
    } finally {
      hookMayEnd.resolve();
      await stopping;
      await engine.stop();
    }
    assert.deepEqual(errors, []);
  });
}
