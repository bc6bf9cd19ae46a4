// A process's state in Redis that cannot be read back (damaged, or written by a newer Node whose
// serialization this one does not know) must not wedge its session: before, the request that met it
// left the process taken in Redis for good (so the session was never idle again, never timed out nor
// evicted), and a close retried the same bytes forever. Now the request fails with a clear error and
// gives the process back with its bytes untouched; a close runs without that process's hook, says so,
// releases its locks and finishes.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { serialize } from 'node:v8';
import { ManualClock, SessionEngine, SessionError, type CloseEvent } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { eventually } from './helpers.js';
import { redisForTest, type RedisForTest } from './redis-support.js';

const IP = '127.0.0.1';
type Vars = { x?: number };

/** Bytes that are no v8 serialization at all, and a valid one that is not a saved process. */
const DAMAGED = [Buffer.from('this is not a serialized process'), serialize(42)] as const;

interface Node {
  readonly engine: SessionEngine<Vars>;
  readonly errors: SessionError[];
  readonly hooked: number[];
  readonly closes: CloseEvent[];
}

function nodeOn(r: RedisForTest): Node {
  const errors: SessionError[] = [];
  const hooked: number[] = [];
  const closes: CloseEvent[] = [];
  const engine = new SessionEngine<Vars>({
    clock: new ManualClock(),
    store: createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: 20 }),
    onClose: (proc) => { hooked.push(proc.vars.x ?? -1); },
  });
  engine.on('error', (error) => errors.push(error));
  engine.on('close', (event) => closes.push(event));
  return { engine, errors, hooked, closes };
}

/** A session whose only process holds x = 1 and the lock on stock/7, written by `writer`; its state then replaced by `bytes`. */
async function damagedSession(r: RedisForTest, writer: Node, bytes: Buffer): Promise<{ sessionId: string; pid: string; key: string }> {
  const lease = await writer.engine.acquire({ sessionId: undefined, ip: IP });
  lease.proc.vars.x = 1;
  assert.equal(await lease.proc.locks.tryLock('stock', 7), true);
  const { sessionId } = lease;
  const pid = lease.proc.processId;
  lease.release();
  const key = `${r.prefix}s:${sessionId}`;
  assert.ok(await eventually(async () => (await r.redis.hget(key, `b:${pid}`)) === '0'), 'the first request\'s release landed');
  await r.redis.hset(key, `d:${pid}`, bytes);
  return { sessionId, pid, key };
}

for (const [index, bytes] of DAMAGED.entries()) {
  const what = index === 0 ? 'bytes that are no serialization' : 'a serialization that is no saved process';

  test(`Redis store, ${what}: the request fails with ERR_SESSION_STATE_UNREADABLE, the process goes back free with its bytes untouched, and the next request fails the same way at once instead of waiting`, { timeout: 20_000 }, async (t: TestContext) => {
    const r = await redisForTest(t);
    if (r === undefined) return;
    const writer = nodeOn(r);
    const reader = nodeOn(r);
    try {
      const { sessionId, pid, key } = await damagedSession(r, writer, bytes);
      for (let attempt = 1; attempt <= 2; attempt++) {
        await assert.rejects(reader.engine.acquire({ sessionId, ip: IP }), (error: unknown) => error instanceof SessionError && error.code === 'ERR_SESSION_STATE_UNREADABLE' && error.httpStatus === 500);
        assert.ok(await eventually(async () => (await r.redis.hget(key, `b:${pid}`)) === '0'), `attempt ${attempt}: the process is free again in Redis`);
        const stored = await r.redis.hgetBuffer(key, `d:${pid}`);
        assert.ok(stored !== null && stored.equals(bytes), `attempt ${attempt}: the unreadable bytes are left as they were`);
      }
      assert.deepEqual(reader.errors.map((e) => [e.code, e.sessionId]), [['ERR_SESSION_STATE_UNREADABLE', sessionId], ['ERR_SESSION_STATE_UNREADABLE', sessionId]], 'each failure is reported on \'error\'');
      assert.equal(await r.redis.zscore(`${r.prefix}idle`, sessionId) !== null, true, 'the session is idle again: it can time out and be evicted');
    } finally {
      await Promise.all([writer.engine.stop(), reader.engine.stop()]);
    }
  });
}

test('Redis store: closing a session whose process state cannot be read finishes: that process\'s hook does not run and is reported, its locks are released, the session\'s key goes', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const writer = nodeOn(r);
  const closer = nodeOn(r);
  try {
    const { sessionId, key } = await damagedSession(r, writer, DAMAGED[0]);
    assert.notEqual(await closer.engine.lockManager.lockedBy({ table: 'stock', key: 7 }), null, 'the lock is held before the close');
    assert.equal(await closer.engine.closeSession(sessionId), true);
    assert.deepEqual(closer.hooked, [], 'no hook ran on a context that could not be rebuilt');
    assert.deepEqual(closer.errors.map((e) => [e.code, e.sessionId]), [['ERR_SESSION_STATE_UNREADABLE', sessionId]]);
    assert.equal(closer.closes.length, 1);
    assert.equal(closer.closes[0]?.hookFailures, 1, 'the close event counts the hook that could not run');
    assert.equal(await r.redis.exists(key), 0, 'the session\'s key is gone');
    assert.equal(await closer.engine.lockManager.lockedBy({ table: 'stock', key: 7 }), null, 'its lock was released by process id');
  } finally {
    await Promise.all([writer.engine.stop(), closer.engine.stop()]);
  }
});
