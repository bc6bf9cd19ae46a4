// The Redis record-lock manager (RedisLockManager) on a real Redis, two nodes (two clients, one prefix):
// one holder per record, lockedBy on every node, releaseAll, renameSession, touch and key lifetimes, odd
// keys. Errors (Redis unreachable, bad arguments): redis-locks-errors.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import type { LockOwner, LockRef } from '../src/locks.js';
import { RedisLockManager, redisLockKey, redisProcessLocksKey } from '../src/redis/locks.js';
import { redisForTest, type RedisForTest } from './redis-support.js';

const TTL_MS = 60_000;
const ann: LockOwner = { sessionId: 'session-ann', processId: 'p-ann' };
const bob: LockOwner = { sessionId: 'session-bob', processId: 'p-bob' };

/** Two nodes: two clients on the same Redis, a lock manager on each, same prefix. */
async function twoNodes(r: RedisForTest, now?: () => number): Promise<[RedisLockManager, RedisLockManager]> {
  const other = await r.client();
  return [
    new RedisLockManager({ redis: r.redis, prefix: r.prefix, lockTtlMs: TTL_MS, now }),
    new RedisLockManager({ redis: other, prefix: r.prefix, lockTtlMs: TTL_MS, now }),
  ];
}

async function keysUnder(redis: Redis, prefix: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    found.push(...keys);
  } while (cursor !== '0');
  return found.sort();
}

test('two nodes contend for a free record: exactly one process gets it, the other gets false', async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const [a, b] = await twoNodes(r);
  const ref = { table: 'Stock', key: 42 };
  const results = await Promise.all([a.tryLock(ann, ref), b.tryLock(bob, ref)]);
  assert.equal(results.filter(Boolean).length, 1);
  const winner = results[0] === true ? ann : bob;
  assert.equal((await a.lockedBy(ref))?.processId, winner.processId);
  assert.equal((await b.lockedBy(ref))?.processId, winner.processId);
});

test('a burst of 200 parallel tryLocks from 2 nodes × 10 processes: each record has exactly one winner, and lockedBy names it on both nodes', async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const [a, b] = await twoNodes(r);
  const records: LockRef[] = Array.from({ length: 10 }, (_, i) => ({ table: 'Burst', key: i }));
  const owners: LockOwner[] = Array.from({ length: 20 }, (_, i) => ({ sessionId: `s${i}`, processId: `p${i}` }));
  // Record-major order, alternating nodes: every record is fought over by both connections at once.
  const attempts = records.flatMap((ref) => owners.map((owner, i) => ({ ref, owner, node: i % 2 === 0 ? a : b })));
  assert.equal(attempts.length, 200);
  const won = await Promise.all(attempts.map(({ ref, owner, node }) => node.tryLock(owner, ref)));

  for (const ref of records) {
    const winners = attempts.filter((attempt, i) => attempt.ref === ref && won[i] === true).map(({ owner }) => owner.processId);
    assert.equal(winners.length, 1, `record ${String(ref.key)} won by ${winners.join(', ') || 'nobody'}`);
    for (const node of [a, b]) assert.equal((await node.lockedBy(ref))?.processId, winners[0]);
  }
});

test('the holding process locks its record again with success and keeps its sinceMs; another process of the same session does not get it', async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  let clock = 1_000;
  const [a, b] = await twoNodes(r, () => clock);
  const ref = { table: 'Orders', key: 'A-1' };
  assert.equal(await a.tryLock(ann, ref), true);
  clock = 2_000;
  assert.equal(await a.tryLock(ann, ref), true);
  assert.equal(await b.tryLock(ann, ref), true, 'the same process id on another node is the same owner');
  assert.equal(await b.tryLock({ sessionId: ann.sessionId, processId: 'p-ann-2' }, ref), false);
  assert.deepEqual(await b.lockedBy(ref), { sessionId: ann.sessionId, processId: ann.processId, sinceMs: 1_000 });
  // One lock, listed once: one unlock frees it.
  assert.equal(await b.unlock(ann, ref), true);
  assert.equal(await a.lockedBy(ref), null);
});

test('unlock by a process that does not hold the record returns false and changes nothing; the holder unlocks it', async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const [a, b] = await twoNodes(r);
  const ref = { table: 'Stock', key: 7 };
  assert.equal(await a.unlock(ann, ref), false, 'a free record');
  assert.equal(await a.tryLock(ann, ref), true);
  const keysBefore = await keysUnder(r.redis, r.prefix);
  const holderBefore = await r.redis.hgetall(redisLockKey(r.prefix, ref));

  assert.equal(await b.unlock(bob, ref), false);
  assert.equal(await a.unlock(bob, ref), false);
  assert.deepEqual(await keysUnder(r.redis, r.prefix), keysBefore);
  assert.deepEqual(await r.redis.hgetall(redisLockKey(r.prefix, ref)), holderBefore);
  assert.equal(await b.tryLock(bob, ref), false);

  assert.equal(await b.unlock(ann, ref), true, 'the holder, from any node');
  assert.equal(await a.lockedBy(ref), null);
  assert.deepEqual(await keysUnder(r.redis, r.prefix), [], 'the lock key and the emptied process set are gone');
  assert.equal(await b.tryLock(bob, ref), true);
});

test('lockedBy on another node shows the session id, process id and sinceMs of the holder, and null once it is released', async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const [a, b] = await twoNodes(r, () => 1_234_567);
  const ref = { table: 'Customers', key: 'C-9' };
  assert.equal(await b.lockedBy(ref), null);
  await a.tryLock(ann, ref);
  assert.deepEqual(await b.lockedBy(ref), { sessionId: 'session-ann', processId: 'p-ann', sinceMs: 1_234_567 });
  await a.unlock(ann, ref);
  assert.equal(await b.lockedBy(ref), null);
});

test('releaseAll on another node releases every lock the process holds, even when given none or some of them, counts each once and leaves other processes\' locks alone', async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const [a, b] = await twoNodes(r);
  const annRefs = Array.from({ length: 5 }, (_, i) => ({ table: 'Orders', key: i }));
  const bobRefs = [{ table: 'Orders', key: 100 }, { table: 'Stock', key: 'x' }];
  for (const ref of annRefs) assert.equal(await a.tryLock(ann, ref), true);
  for (const ref of bobRefs) assert.equal(await b.tryLock(bob, ref), true);

  assert.equal(await b.releaseAll(ann, []), 5);
  for (const ref of annRefs) assert.equal(await a.lockedBy(ref), null);
  for (const ref of bobRefs) assert.equal((await a.lockedBy(ref))?.processId, bob.processId);
  assert.equal(await r.redis.exists(redisProcessLocksKey(r.prefix, ann.processId)), 0);
  assert.equal(await a.releaseAll(ann, annRefs), 0, 'nothing left to release');

  // A subset of refs, some repeated and one held by someone else: still all of the owner's, each once.
  for (const ref of annRefs) await a.tryLock(ann, ref);
  assert.equal(await b.releaseAll(ann, [annRefs[0]!, annRefs[0]!, annRefs[3]!, bobRefs[0]!]), 5);
  for (const ref of bobRefs) assert.equal((await b.lockedBy(ref))?.processId, bob.processId);
  assert.equal(await a.releaseAll(bob, []), 2);
  assert.deepEqual(await keysUnder(r.redis, r.prefix), []);
});

test('releaseAll frees a lock the process set lost track of when the caller names it', async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const [a, b] = await twoNodes(r);
  const ref = { table: 'Stock', key: 1 };
  await a.tryLock(ann, ref);
  // As if maxmemory eviction had dropped the set.
  await r.redis.del(redisProcessLocksKey(r.prefix, ann.processId));
  assert.equal(await b.releaseAll(ann, [ref]), 1);
  assert.equal(await a.lockedBy(ref), null);
});

test('renameSession shows the new session id on every lock of the listed processes, on every node, and on no other lock', async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const [a, b] = await twoNodes(r);
  const annTask: LockOwner = { sessionId: ann.sessionId, processId: 'p-ann-task' };
  await a.tryLock(ann, { table: 'Orders', key: 1 });
  await a.tryLock(ann, { table: 'Orders', key: 2 });
  await b.tryLock(annTask, { table: 'Stock', key: 1 });
  await b.tryLock(bob, { table: 'Stock', key: 2 });

  assert.equal(await b.renameSession([ann.processId, annTask.processId], 'session-ann-2'), 3);
  for (const node of [a, b]) {
    assert.equal((await node.lockedBy({ table: 'Orders', key: 1 }))?.sessionId, 'session-ann-2');
    assert.equal((await node.lockedBy({ table: 'Orders', key: 2 }))?.sessionId, 'session-ann-2');
    const task = await node.lockedBy({ table: 'Stock', key: 1 });
    assert.deepEqual([task?.sessionId, task?.processId], ['session-ann-2', 'p-ann-task']);
    assert.equal((await node.lockedBy({ table: 'Stock', key: 2 }))?.sessionId, bob.sessionId);
  }
  assert.equal(await a.renameSession([], 'whatever'), 0);
  assert.equal(await a.renameSession(['p-unknown'], 'whatever'), 0);
  // The locks are still the process's own: the renamed owner unlocks them.
  assert.equal(await a.unlock({ sessionId: 'session-ann-2', processId: ann.processId }, { table: 'Orders', key: 1 }), true);
});

test('touch sets the TTL of the process set and of every lock it holds, drops locks it lost, and locking again never shortens a TTL', async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const [a, b] = await twoNodes(r);
  const refs = Array.from({ length: 3 }, (_, i) => ({ table: 'Orders', key: i }));
  for (const ref of refs) await a.tryLock(ann, ref);
  const setKey = redisProcessLocksKey(r.prefix, ann.processId);
  const lockKeys = refs.map((ref) => redisLockKey(r.prefix, ref));
  for (const key of [setKey, ...lockKeys]) {
    const ttl = await r.redis.pttl(key);
    assert.ok(ttl > 0 && ttl <= TTL_MS, `${key}: ${ttl}`);
  }

  assert.equal(await b.touch(ann.processId, 10 * TTL_MS), 3);
  for (const key of [setKey, ...lockKeys]) assert.ok((await r.redis.pttl(key)) > TTL_MS, key);
  await a.tryLock(ann, refs[0]!);
  assert.ok((await r.redis.pttl(lockKeys[0]!)) > TTL_MS, 're-locking kept the longer TTL');
  assert.ok((await r.redis.pttl(setKey)) > TTL_MS);

  // The first lock's key expires (as after a long pause) and bob takes the record.
  await r.redis.del(lockKeys[0]!);
  assert.equal(await b.tryLock(bob, refs[0]!), true);
  assert.equal(await a.touch(ann.processId), 2);
  assert.equal(await r.redis.sismember(setKey, lockKeys[0]!), 0, 'the lost lock left the set');
  assert.ok((await r.redis.pttl(lockKeys[0]!)) <= TTL_MS, "bob's lock is not refreshed by ann's touch");
  for (const key of [setKey, lockKeys[1]!, lockKeys[2]!]) {
    const ttl = await r.redis.pttl(key);
    assert.ok(ttl > 0 && ttl <= TTL_MS, `touch() without ttlMs uses lockTtlMs: ${key} ${ttl}`);
  }

  assert.equal(await a.touch('p-nobody'), 0);
  assert.equal(await r.redis.exists(redisProcessLocksKey(r.prefix, 'p-nobody')), 0, 'touch creates nothing');
});

test('every key the lock manager writes has a TTL no longer than lockTtlMs', async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const [a, b] = await twoNodes(r);
  for (let i = 0; i < 20; i++) {
    const owner = { sessionId: `s${i % 4}`, processId: `p${i % 4}` };
    await (i % 2 === 0 ? a : b).tryLock(owner, { table: `T${i % 3}`, key: i });
  }
  await a.tryLock({ sessionId: 's0', processId: 'p0' }, { table: 'T0', key: 0 });
  await b.renameSession(['p1', 'p2'], 's-renamed');
  await a.unlock({ sessionId: 's3', processId: 'p3' }, { table: 'T0', key: 3 });
  await b.touch('p2');
  await a.releaseAll({ sessionId: 's1', processId: 'p1' }, []);

  const keys = await keysUnder(r.redis, r.prefix);
  assert.ok(keys.length > 10, `keys: ${keys.length}`);
  for (const key of keys) {
    const ttl = await r.redis.pttl(key);
    assert.ok(ttl > 0 && ttl <= TTL_MS, `${key} has PTTL ${ttl}`);
  }
});

test('odd table and key strings are distinct records: separators, NUL, unicode, unpaired surrogates, escapes, 42 vs "42"', async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const [a, b] = await twoNodes(r);
  const refs: LockRef[] = [
    { table: 'a:b', key: 'c' }, { table: 'a', key: 'b:c' }, { table: 'a:string:b', key: 'c' }, { table: 'a', key: 'b:string:c' },
    { table: '', key: '' }, { table: '', key: 0 }, { table: '0', key: '' },
    { table: 'T', key: 42 }, { table: 'T', key: '42' }, { table: 'T', key: 4.2 }, { table: 'T', key: -1 }, { table: 'T', key: '-1' },
    { table: 'T\u0000', key: 'x' }, { table: 'T', key: '\u0000x' }, { table: 'T', key: 'x\u0000' },
    { table: 'Stück', key: 'Größe' }, { table: '表', key: '記録' }, { table: 'T', key: '😀' },
    { table: 'T', key: '\uD83D' }, { table: 'T', key: '\uDE00' }, { table: 'T', key: '\uFFFD' },
    { table: 'T', key: '%' }, { table: 'T', key: '%25' }, { table: 'T', key: '%uD83D' },
    { table: '5:T', key: 'x' }, { table: 'T', key: '*' }, { table: 'T', key: '[a-z]?' },
  ];
  const owners = refs.map((_, i) => ({ sessionId: `s${i}`, processId: `p${i}` }));
  const won = await Promise.all(refs.map((ref, i) => (i % 2 === 0 ? a : b).tryLock(owners[i]!, ref)));
  assert.deepEqual(won, refs.map(() => true), 'no two of them share a lock');
  assert.equal(new Set(refs.map((ref) => redisLockKey(r.prefix, ref))).size, refs.length);
  for (const [i, ref] of refs.entries()) {
    assert.equal((await b.lockedBy(ref))?.processId, owners[i]!.processId, JSON.stringify(ref));
    assert.equal(await a.tryLock(owners[(i + 1) % refs.length]!, ref), false);
  }
  for (const [i, ref] of refs.entries()) assert.equal(await a.releaseAll(owners[i]!, [ref]), 1);
  assert.deepEqual(await keysUnder(r.redis, r.prefix), []);
});

test('the lock key spells the table length, the table, the key type and the key', () => {
  assert.equal(redisLockKey('lws:', { table: 'Stock', key: 42 }), 'lws:lock:5:Stock:number:42');
  assert.equal(redisLockKey('lws:', { table: 'Stock', key: '42' }), 'lws:lock:5:Stock:string:42');
  assert.equal(redisLockKey('', { table: 'a:b', key: 'c:d' }), 'lock:3:a:b:string:c:d');
  assert.equal(redisLockKey('', { table: '100%', key: '\uD800' }), 'lock:6:100%25:string:%uD800');
  assert.equal(redisProcessLocksKey('lws:', 'p1'), 'lws:plocks:p1');
});

test('a client with an ioredis keyPrefix: the process set lists the full key names, so releaseAll and touch from another such client find every lock', async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const a = new RedisLockManager({ redis: await r.client({ keyPrefix: `${r.prefix}app:` }), prefix: 'locks:', lockTtlMs: TTL_MS });
  const b = new RedisLockManager({ redis: await r.client({ keyPrefix: `${r.prefix}app:` }), prefix: 'locks:', lockTtlMs: TTL_MS });
  await a.tryLock(ann, { table: 'Orders', key: 1 });
  await a.tryLock(ann, { table: 'Orders', key: 2 });
  assert.deepEqual(await keysUnder(r.redis, r.prefix), [
    `${r.prefix}app:locks:lock:6:Orders:number:1`,
    `${r.prefix}app:locks:lock:6:Orders:number:2`,
    `${r.prefix}app:locks:plocks:p-ann`,
  ]);
  assert.equal(await b.touch(ann.processId), 2);
  assert.equal(await b.releaseAll(ann, []), 2);
  assert.deepEqual(await keysUnder(r.redis, r.prefix), []);
});

/** A loopback port nobody listens on (bound, then closed). */
