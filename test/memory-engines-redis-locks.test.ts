// Memory-store engines on several nodes sharing one RedisLockManager as their `locks` (README,
// `legacy-web-sessions/redis`: "the `locks` of memory-store engines on several nodes that share records
// but not sessions"). What the other nodes see of a node's locks must follow its sessions:
//  - `regenerate` moves the session's locks to the new id, and `lockedBy` reports the new id
//    (docs/security.md §2), from any node;
//  - each request of a session holding locks gives them a full lifetime again (RedisLockManager's
//    `touch`: "call it at the end of each request"), so a working session never loses them;
//  - with processesPerSession > 1, a request renews the locks of the session's other processes too;
//  - a record whose tryLock reached Redis but whose answer was lost is freed when its session closes (or
//    at once when the answer is lost after the close), not left locked by a closed session for `lockTtlMs`.
// Each engine stands for one node (their process ids differ as those of separate Node processes do:
// test/process-ids-across-nodes.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SessionEngine } from '../src/index.js';
import { RedisLockManager } from '../src/redis/index.js';
import { eventually } from './helpers.js';
import { wrapScript } from './redis-crossing.js';
import { redisForTest, type RedisForTest } from './redis-support.js';

const IP = '127.0.0.1';

// A session times out before its locks could expire between two of its requests (lockTtlMs: "longer
// than a session may stay idle").
async function nodeOn(r: RedisForTest, lockTtlMs: number, processesPerSession = 1) {
  const client = await r.client();
  const engine = new SessionEngine({ closeTimeoutMs: 1_000, processesPerSession, inactiveProcessTimeoutMs: Math.floor(lockTtlMs * 0.9), locks: new RedisLockManager({ redis: client, prefix: r.prefix, lockTtlMs }) });
  const errors: string[] = [];
  engine.on('error', (error) => errors.push(error.code));
  return { engine, client, errors };
}

test('memory engines sharing a RedisLockManager: after regenerate, lockedBy on another node reports the session\'s new id', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const a = await nodeOn(r, 60_000);
  const b = await nodeOn(r, 60_000);
  try {
    const lease = await a.engine.acquire({ sessionId: undefined, ip: IP });
    assert.equal(await lease.proc.locks.tryLock('Stock', 42), true);
    const oldId = lease.sessionId;
    const newId = await a.engine.regenerate(oldId);
    assert.ok(newId !== null && newId !== oldId);
    assert.equal((await lease.proc.locks.lockedBy('Stock', 42))?.sessionId, newId, 'on the node itself');
    const other = await b.engine.acquire({ sessionId: undefined, ip: IP });
    assert.equal((await other.proc.locks.lockedBy('Stock', 42))?.sessionId, newId, 'on another node');
    other.release();
    lease.release();
  } finally {
    await Promise.all([a.engine.stop(), b.engine.stop()]);
  }
});

test('memory engines sharing a RedisLockManager: each request of a session holding locks gives them a full lifetime again (lockTtlMs), so a working session never loses them to another node', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const LOCK_TTL_MS = 60_000;
  const a = await nodeOn(r, LOCK_TTL_MS);
  const b = await nodeOn(r, LOCK_TTL_MS);
  try {
    const first = await a.engine.acquire({ sessionId: undefined, ip: IP });
    assert.equal(await first.proc.locks.tryLock('Stock', 42), true);
    const id = first.sessionId;
    first.release();
    // Time has run the locks' keys down to their last moments (Redis's clock: cut here, not waited for).
    const lockKeys = (await r.redis.keys(`${r.prefix}*`)).filter((k) => k.includes('lock'));
    assert.ok(lockKeys.length >= 2, `the lock and the process's set of locks: ${lockKeys.join()}`);
    for (const key of lockKeys) await r.redis.pexpire(key, 2_000);
    const again = await a.engine.acquire({ sessionId: id, ip: IP });
    again.release();
    assert.ok(await eventually(async () => {
      const ttls = await Promise.all(lockKeys.map((key) => r.redis.pttl(key)));
      return ttls.every((ttl) => ttl > 30_000);
    }), 'the request gave the locks a full lifetime again');
    const other = await b.engine.acquire({ sessionId: undefined, ip: IP });
    assert.equal(await other.proc.locks.tryLock('Stock', 42), false, 'another node\'s process cannot take the record the working session holds');
    other.release();
  } finally {
    await Promise.all([a.engine.stop(), b.engine.stop()]);
  }
});

test('memory engine with a RedisLockManager: a tryLock that reached Redis but whose answer was lost does not leave the record locked by the session after it closed', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const a = await nodeOn(r, 60_000);
  try {
    const lease = await a.engine.acquire({ sessionId: undefined, ip: IP });
    // Redis runs the script; the answer is lost on the way back (a command timeout, a dropped connection).
    wrapScript(a.client, 'lwsLockAcquire', (acquire) => async (...args) => {
      await acquire(...args);
      throw new Error('Command timed out');
    });
    await assert.rejects(lease.proc.locks.tryLock('Stock', 42), { code: 'ERR_SESSION_STORE_UNAVAILABLE' });
    lease.release();
    assert.equal(await a.engine.closeSession(lease.sessionId), true);
    assert.equal(await a.engine.lockManager.lockedBy({ table: 'Stock', key: 42 }), null, 'the closed session still holds the record (until lockTtlMs)');
  } finally {
    await a.engine.stop();
  }
});

// processesPerSession 2: the process that took the lock (B) gets no more requests once they come one at a
// time (freeRequestProcess always picks the first free process, A). The session works all along, yet
// B's locks are never renewed: they expire lockTtlMs after they were taken, while B's held() lists them.
test('processesPerSession 2: a request of the session renews the locks of its other process too (the session works, its locks must not expire)', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const LOCK_TTL_MS = 60_000;
  const a = await nodeOn(r, LOCK_TTL_MS, 2);
  const b = await nodeOn(r, LOCK_TTL_MS);
  try {
    const first = await a.engine.acquire({ sessionId: undefined, ip: IP });
    const id = first.sessionId;
    const second = await a.engine.acquire({ sessionId: id, ip: IP }); // its second process, B
    assert.notEqual(second.proc.processId, first.proc.processId);
    assert.equal(await second.proc.locks.tryLock('Stock', 42), true);
    second.release();
    first.release();
    const lockKeys = (await r.redis.keys(`${r.prefix}*`)).filter((k) => k.includes('lock'));
    assert.ok(lockKeys.length >= 2, lockKeys.join());
    for (const key of lockKeys) await r.redis.pexpire(key, 2_000);
    // The session keeps working: its requests run on A, one at a time.
    const again = await a.engine.acquire({ sessionId: id, ip: IP });
    assert.equal(again.proc.processId, first.proc.processId, 'requests one at a time run on the first process');
    again.release();
    const renewed = await eventually(async () => {
      const ttls = await Promise.all(lockKeys.map((key) => r.redis.pttl(key)));
      return ttls.every((ttl) => ttl > 30_000);
    }, 1_000);
    assert.ok(renewed, 'the working session\'s lock (held by its process B) was not renewed: it expires although the session works');
  } finally {
    await Promise.all([a.engine.stop(), b.engine.stop()]);
  }
});

// The tryLock's answer is lost (rejects) after the session's close tore the process down: the teardown's
// releaseAll has gone already, and the unsure ref is put on a closed process that nobody releases.
test('a tryLock whose answer is lost after its process was torn down does not leave the record locked until lockTtlMs', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const a = await nodeOn(r, 60_000);
  try {
    const lease = await a.engine.acquire({ sessionId: undefined, ip: IP });
    let releaseScript!: () => void;
    const gate = new Promise<void>((resolve) => { releaseScript = resolve; });
    // The script is sent only after the teardown (a slow network); it runs in Redis, its answer is lost.
    wrapScript(a.client, 'lwsLockAcquire', (acquire) => async (...args) => {
      await gate;
      await acquire(...args);
      throw new Error('Command timed out');
    });
    const trying = lease.proc.locks.tryLock('Stock', 42).then(() => 'answered', (error: { code?: string }) => error.code);
    lease.release();
    const closing = a.engine.closeSession(lease.sessionId);
    assert.ok(await eventually(() => lease.proc.closed, 5_000), 'torn down');
    await closing;
    releaseScript();
    assert.equal(await trying, 'ERR_SESSION_STORE_UNAVAILABLE');
    const holder = await eventually(async () => (await a.engine.lockManager.lockedBy({ table: 'Stock', key: 42 })) === null, 1_000);
    assert.ok(holder, 'the closed session still holds the record (until lockTtlMs)');
  } finally {
    await a.engine.stop();
  }
});
