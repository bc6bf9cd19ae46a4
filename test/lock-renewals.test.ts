// A memory-store engine whose `locks` expire (a LockManager with `touch` and `lockTtlMs`, such as
// RedisLockManager shared by several nodes) renews every process holding locks every third of
// lockTtlMs, by the engine's clock: a spawned task running longer than lockTtlMs, or a session idle that
// long, keeps its locks. Only a crashed node's locks are left to expire. Processes that hold no lock any
// more, or were torn down, are not renewed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, MemoryLockManager, SessionEngine, type LockManager, type LockOwner, type LockRef } from '../src/index.js';
import { RedisLockManager } from '../src/redis/index.js';
import { deferred, eventually, settle } from './helpers.js';
import { redisForTest } from './redis-support.js';

const IP = '127.0.0.1';
const LOCK_TTL_MS = 30_000;
const ROUND_MS = LOCK_TTL_MS / 3;

/** The memory lock manager with expiring locks' two extras, counting renewals per process. */
class TouchCounting implements LockManager {
  readonly touched: string[] = [];
  readonly #inner: MemoryLockManager;
  constructor(clock: ManualClock, readonly lockTtlMs: number | undefined) {
    this.#inner = new MemoryLockManager(() => clock.now());
  }
  tryLock(owner: LockOwner, ref: LockRef) { return this.#inner.tryLock(owner, ref); }
  unlock(owner: LockOwner, ref: LockRef) { return this.#inner.unlock(owner, ref); }
  lockedBy(ref: LockRef) { return this.#inner.lockedBy(ref); }
  releaseAll(owner: LockOwner, refs: readonly LockRef[]) { return this.#inner.releaseAll(owner, refs); }
  async touch(processId: string) {
    this.touched.push(processId);
    return 1;
  }
  /** Renewals of `processId` while the clock moves `rounds` renewal periods. */
  async renewalsOver(clock: ManualClock, processId: string, rounds: number): Promise<number> {
    const before = this.touched.filter((id) => id === processId).length;
    for (let i = 0; i < rounds; i++) {
      clock.advance(ROUND_MS);
      await settle();
    }
    return this.touched.filter((id) => id === processId).length - before;
  }
}

test('a spawned task holding a lock with no request of its session is renewed every third of lockTtlMs; once it ends, no more', async () => {
  const clock = new ManualClock();
  const locks = new TouchCounting(clock, LOCK_TTL_MS);
  const engine = new SessionEngine({ clock, locks, inactiveProcessTimeoutMs: 10 * LOCK_TTL_MS });
  const gate = deferred();
  const locked = deferred<string>();
  const ended = deferred();
  const lease = await engine.acquire({ sessionId: undefined, ip: IP });
  lease.proc.spawn('report', async (proc) => {
    assert.equal(await proc.locks.tryLock('Stock', 42), true);
    locked.resolve(proc.processId);
    await gate.promise;
    ended.resolve();
  });
  lease.release();
  const taskId = await locked.promise;
  assert.equal(await locks.renewalsOver(clock, taskId, 6), 6, 'one renewal per period, over two lock lifetimes');
  gate.resolve();
  await ended.promise;
  await settle();
  assert.equal(await locks.renewalsOver(clock, taskId, 3), 0, 'the task ended: its locks were released, nothing to renew');
  await engine.stop();
});

test('an idle session holding a lock is renewed until it unlocks; a closed session is not renewed', async () => {
  const clock = new ManualClock();
  const locks = new TouchCounting(clock, LOCK_TTL_MS);
  const engine = new SessionEngine({ clock, locks, inactiveProcessTimeoutMs: 10 * LOCK_TTL_MS });
  const unlocking = await engine.acquire({ sessionId: undefined, ip: IP });
  assert.equal(await unlocking.proc.locks.tryLock('Stock', 1), true);
  unlocking.release();
  const closing = await engine.acquire({ sessionId: undefined, ip: IP });
  assert.equal(await closing.proc.locks.tryLock('Stock', 2), true);
  closing.release();

  assert.equal(await locks.renewalsOver(clock, unlocking.proc.processId, 4), 4, 'idle longer than lockTtlMs, its lock lives');
  assert.equal(locks.touched.filter((id) => id === closing.proc.processId).length, 1 + 4, 'the other session too (once at its request\'s end)');

  const again = await engine.acquire({ sessionId: unlocking.sessionId, ip: IP });
  assert.equal(await again.proc.locks.unlock('Stock', 1), true);
  again.release();
  assert.equal(await engine.closeSession(closing.sessionId), true);
  const unlockedBefore = locks.touched.filter((id) => id === unlocking.proc.processId).length;
  const closedBefore = locks.touched.filter((id) => id === closing.proc.processId).length;
  await locks.renewalsOver(clock, unlocking.proc.processId, 3);
  assert.equal(locks.touched.filter((id) => id === unlocking.proc.processId).length, unlockedBefore, 'holds no lock: not renewed');
  assert.equal(locks.touched.filter((id) => id === closing.proc.processId).length, closedBefore, 'closed: not renewed');
  await engine.stop();
});

test('a lock manager with touch but no lockTtlMs is renewed only at request ends, as before; an invalid lockTtlMs is refused', async () => {
  const clock = new ManualClock();
  const counting = new TouchCounting(clock, undefined);
  const engine = new SessionEngine({ clock, locks: counting });
  const lease = await engine.acquire({ sessionId: undefined, ip: IP });
  assert.equal(await lease.proc.locks.tryLock('Stock', 1), true);
  lease.release();
  const atRelease = counting.touched.length;
  assert.ok(atRelease >= 1, 'renewed at the request\'s end');
  await counting.renewalsOver(clock, lease.proc.processId, 3);
  assert.equal(counting.touched.length, atRelease, 'no renewal rounds without lockTtlMs');
  await engine.stop();
  for (const lockTtlMs of [0, -1, 1.5, Number.NaN, '30000']) {
    assert.throws(() => new SessionEngine({ locks: new TouchCounting(clock, lockTtlMs as number) }), { code: 'ERR_SESSION_INVALID_OPTION' }, String(lockTtlMs));
  }
});

test('RedisLockManager as a memory engine\'s locks: a task holding a lock longer than lockTtlMs keeps it in Redis', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const client = await r.client();
  const engine = new SessionEngine({ clock, locks: new RedisLockManager({ redis: client, prefix: r.prefix, lockTtlMs: LOCK_TTL_MS }) });
  const errors: string[] = [];
  engine.on('error', (error) => errors.push(error.code));
  const gate = deferred();
  const locked = deferred();
  try {
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    lease.proc.spawn('report', async (proc) => {
      assert.equal(await proc.locks.tryLock('Stock', 42), true);
      locked.resolve();
      await gate.promise;
    });
    lease.release();
    await locked.promise;
    const key = `${r.prefix}lock:5:Stock:number:42`;
    // What lockTtlMs of real time without a renewal would leave: a second to live.
    assert.equal(await r.redis.pexpire(key, 1_000), 1);
    clock.advance(ROUND_MS);
    assert.ok(await eventually(async () => await r.redis.pttl(key) > 1_000), 'renewed to a full lifetime');
    assert.ok(await r.redis.pttl(key) <= LOCK_TTL_MS);
  } finally {
    gate.resolve();
    await engine.stop();
  }
  assert.deepEqual(errors, []);
});
