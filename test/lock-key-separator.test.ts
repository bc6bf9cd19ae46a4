// Two different records are two locks, whatever characters their table and key hold: the Redis lock
// manager escapes its keys so that "two different records never share a key"; the memory one must not
// let a NUL in a table or key name merge two records either (a false 'locked', or an unlock of the
// wrong record that breaks mutual exclusion).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, MemoryLockManager, SessionEngine } from '../src/index.js';

const IP = '127.0.0.1';
const ONE = { table: 'orders', key: 'a\u0000string\u0000b' };
const TWO = { table: 'orders\u0000string\u0000a', key: 'b' };

test('memory locks: records whose names hold NUL characters never share a lock (a process unlocking one does not free the other)', { timeout: 10_000 }, async () => {
  const engine = new SessionEngine({ clock: new ManualClock() });
  const ann = await engine.acquire({ sessionId: undefined, ip: IP });
  const bob = await engine.acquire({ sessionId: undefined, ip: IP });
  assert.equal(await ann.proc.locks.tryLock(ONE.table, ONE.key), true);
  assert.equal(await bob.proc.locks.lockedBy(TWO.table, TWO.key), null, 'the second record is free: nobody locked it');
  assert.equal(await ann.proc.locks.unlock(TWO.table, TWO.key), false, 'ann does not hold the second record');
  assert.equal(await bob.proc.locks.tryLock(ONE.table, ONE.key), false, 'ann still holds the first record');
  assert.equal(await bob.proc.locks.tryLock(TWO.table, TWO.key), true, 'bob can take the second record');
  assert.deepEqual(ann.proc.locks.held(), [ONE]);
  ann.release();
  bob.release();
  await engine.stop();
});

test('MemoryLockManager: two different records (NUL inside their names) are two locks', { timeout: 10_000 }, async () => {
  const locks = new MemoryLockManager();
  assert.equal(await locks.tryLock({ sessionId: 's1', processId: 'p1' }, ONE), true);
  assert.equal(await locks.tryLock({ sessionId: 's2', processId: 'p2' }, TWO), true);
  assert.equal(locks.size, 2);
});
