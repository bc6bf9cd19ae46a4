// The Redis record-lock manager's errors: with Redis unreachable or its client closed, every method
// rejects with ERR_SESSION_STORE_UNAVAILABLE (no hang, nothing unhandled); bad options and arguments are
// TypeErrors naming what is wrong.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { SessionError } from '../src/errors.js';
import type { LockOwner } from '../src/locks.js';
import { RedisLockManager } from '../src/redis/locks.js';
import { redisForTest } from './redis-support.js';
import { freePort } from './fixtures/redis-server.js';

const TTL_MS = 60_000;
const ann: LockOwner = { sessionId: 'session-ann', processId: 'p-ann' };

function isUnavailable(method: string): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof SessionError, `${method}: ${String(error)}`);
    assert.equal(error.code, 'ERR_SESSION_STORE_UNAVAILABLE');
    assert.equal(error.httpStatus, 503);
    assert.ok(error.cause instanceof Error, `${method}: the client's error is the cause`);
    assert.match(error.message, new RegExp(`^session store unavailable: ${method}: `));
    return true;
  };
}

async function assertEveryMethodUnavailable(locks: RedisLockManager): Promise<void> {
  const ref = { table: 'Stock', key: 1 };
  const calls: Record<string, () => Promise<unknown>> = {
    tryLock: () => locks.tryLock(ann, ref),
    unlock: () => locks.unlock(ann, ref),
    lockedBy: () => locks.lockedBy(ref),
    releaseAll: () => locks.releaseAll(ann, [ref]),
    renameSession: () => locks.renameSession([ann.processId], 'new-id'),
    touch: () => locks.touch(ann.processId),
  };
  for (const [method, call] of Object.entries(calls)) await assert.rejects(call(), isUnavailable(method));
}

test('with Redis unreachable every method rejects with SessionError ERR_SESSION_STORE_UNAVAILABLE carrying the client error, and nothing is left unhandled', async (t) => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => { unhandled.push(reason); };
  process.on('unhandledRejection', onUnhandled);
  t.after(() => process.off('unhandledRejection', onUnhandled));

  const redis = new Redis({ host: '127.0.0.1', port: await freePort(), retryStrategy: () => null, maxRetriesPerRequest: 0, connectTimeout: 1_000 });
  redis.on('error', () => {});
  t.after(() => redis.disconnect());
  const locks = new RedisLockManager({ redis, prefix: 'lws-test:down:', lockTtlMs: TTL_MS });
  await assertEveryMethodUnavailable(locks);
  // Calls made at once, none awaited in turn: each still rejects with the same error.
  const together = await Promise.allSettled([locks.tryLock(ann, { table: 'T', key: 1 }), locks.lockedBy({ table: 'T', key: 1 }), locks.touch('p')]);
  for (const result of together) assert.ok(result.status === 'rejected' && result.reason instanceof SessionError && result.reason.code === 'ERR_SESSION_STORE_UNAVAILABLE');

  for (let i = 0; i < 5; i++) await nextTurn();
  assert.deepEqual(unhandled, []);
});

test('a client that was connected and then closed gives ERR_SESSION_STORE_UNAVAILABLE too, not a hang', async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const client = await r.client();
  const locks = new RedisLockManager({ redis: client, prefix: r.prefix, lockTtlMs: TTL_MS });
  assert.equal(await locks.tryLock(ann, { table: 'Stock', key: 1 }), true);
  await client.quit();
  await assertEveryMethodUnavailable(locks);
});

test('bad options and bad arguments are TypeErrors naming what is wrong', async (t) => {
  const redis = new Redis({ lazyConnect: true });
  t.after(() => redis.disconnect());
  const bad: [unknown, RegExp][] = [
    [undefined, /options must be an object/],
    [{ prefix: 'x:', lockTtlMs: 1000 }, /redis must be an ioredis client/],
    [{ redis: {}, lockTtlMs: 1000 }, /redis must be an ioredis client/],
    [{ redis, prefix: 42, lockTtlMs: 1000 }, /prefix must be a string/],
    [{ redis, prefix: '50%:', lockTtlMs: 1000 }, /without '%'/],
    [{ redis }, /lockTtlMs must be an integer from 1 to/],
    [{ redis, lockTtlMs: 0 }, /lockTtlMs must be an integer/],
    [{ redis, lockTtlMs: -5 }, /lockTtlMs/],
    [{ redis, lockTtlMs: 1.5 }, /lockTtlMs/],
    [{ redis, lockTtlMs: '60000' }, /lockTtlMs/],
    [{ redis, lockTtlMs: Number.POSITIVE_INFINITY }, /lockTtlMs/],
    [{ redis, lockTtlMs: 1000, now: 5 }, /now must be a function/],
  ];
  for (const [options, message] of bad) {
    assert.throws(() => new RedisLockManager(options as never), (error: unknown) => error instanceof TypeError && message.test(error.message), JSON.stringify(options));
  }

  const options = { redis, prefix: 'x:', lockTtlMs: 1000 };
  const locks = new RedisLockManager(options);
  assert.deepEqual(options, { redis, prefix: 'x:', lockTtlMs: 1000 }, 'the options object is not changed');
  assert.equal(locks.prefix, 'x:');
  assert.equal(new RedisLockManager({ redis, lockTtlMs: 1000 }).prefix, 'lws:');
  await assert.rejects(locks.tryLock(ann, { table: 1, key: 1 } as never), TypeError);
  await assert.rejects(locks.tryLock(ann, { table: 'T', key: null } as never), TypeError);
  await assert.rejects(locks.tryLock({ sessionId: 's', processId: '' }, { table: 'T', key: 1 }), /processId must be a non-empty string/);
  await assert.rejects(locks.releaseAll(ann, 'T' as never), /refs must be an array/);
  await assert.rejects(locks.renameSession(['p1'], 5 as never), /newSessionId must be a string/);
  await assert.rejects(locks.touch('p1', 0), /ttlMs must be an integer/);
  assert.equal(redis.status, 'wait', 'argument errors never reach Redis');
});
