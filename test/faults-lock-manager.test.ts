// A lock manager of the application's own (the `locks` option) that fails to release, or releases late:
// every teardown that gives locks back (a close for any reason, a discarded session, a process whose init
// failed, a task that ended) reports the failure on 'error' (ERR_SESSION_STORE_UNAVAILABLE, storeErrors)
// and goes on; nothing rejects unhandled (which ends a Node process), no close is left hanging.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, MemoryLockManager, SessionEngine, type CloseEvent, type LockManager, type LockOwner, type LockRef, type SessionError } from '../src/index.js';
import { deferred, settle } from './helpers.js';
import { watchEscapes } from './faults-support.js';

const IP = '127.0.0.1';
const RECORD: LockRef = { table: 'Products', key: 7 };
const GUARD = { timeout: 10_000 };

const escaped = watchEscapes();

/** A memory lock manager whose releaseAll fails while `failing`, or waits for `gate` when one is set. */
class FlakyLocks implements LockManager {
  readonly #inner = new MemoryLockManager();
  failing = false;
  gate: Promise<void> | undefined;
  tryLock(owner: LockOwner, ref: LockRef): Promise<boolean> { return this.#inner.tryLock(owner, ref); }
  unlock(owner: LockOwner, ref: LockRef): Promise<boolean> { return this.#inner.unlock(owner, ref); }
  lockedBy(ref: LockRef): ReturnType<LockManager['lockedBy']> { return this.#inner.lockedBy(ref); }
  async releaseAll(owner: LockOwner, refs: readonly LockRef[]): Promise<number> {
    if (this.gate !== undefined) await this.gate;
    if (this.failing) throw new Error('lock service down');
    return this.#inner.releaseAll(owner, refs);
  }
}

type Vars = { n?: number };

function setUp(options: { maxSessions?: number; init?: (proc: import('../src/index.js').WebProcess<Vars>) => Promise<Vars> } = {}): {
  engine: SessionEngine<Vars>; locks: FlakyLocks; errors: SessionError[]; closes: CloseEvent[]; hooked: string[];
} {
  const locks = new FlakyLocks();
  const hooked: string[] = [];
  const engine = new SessionEngine<Vars>({ clock: new ManualClock(), locks, onClose: (proc) => { hooked.push(proc.processId); }, ...options });
  const errors: SessionError[] = [];
  const closes: CloseEvent[] = [];
  engine.on('error', (error) => errors.push(error));
  engine.on('close', (event) => closes.push(event));
  return { engine, locks, errors, closes, hooked };
}

async function lockedSession(engine: SessionEngine<Vars>): Promise<string> {
  const lease = await engine.acquire({ sessionId: undefined, ip: IP });
  assert.equal(await lease.proc.locks.tryLock(RECORD.table, RECORD.key), true);
  lease.release();
  return lease.sessionId;
}

test('a close from outside whose lock release fails: the close completes (hook run, close event), the failure is reported, nothing escapes', GUARD, async () => {
  const { engine, locks, errors, closes, hooked } = setUp();
  const id = await lockedSession(engine);
  locks.failing = true;
  assert.equal(await engine.closeSession(id), true);
  assert.equal(hooked.length, 1);
  assert.deepEqual(closes.map((c) => c.reason), ['closed']);
  assert.deepEqual(errors.map((e) => [e.code, (e.cause as Error).message]), [['ERR_SESSION_STORE_UNAVAILABLE', 'lock service down']]);
  assert.equal(engine.stats().storeErrors, 1);
  locks.failing = false;
  await engine.stop();
  await settle(5);
  assert.deepEqual(escaped, []);
});

test('an eviction whose lock release fails: the newcomer is served, the failure reported, no unhandled rejection', GUARD, async () => {
  const { engine, locks, errors, closes } = setUp({ maxSessions: 1 });
  await lockedSession(engine);
  locks.failing = true;
  const newcomer = await engine.acquire({ sessionId: undefined, ip: IP });
  newcomer.release();
  await settle(5);
  assert.deepEqual(closes.map((c) => c.reason), ['evicted']);
  assert.deepEqual(errors.map((e) => e.code), ['ERR_SESSION_STORE_UNAVAILABLE']);
  locks.failing = false;
  await engine.stop();
  await settle(5);
  assert.deepEqual(escaped, []);
});

test('an init that takes a lock and throws: the caller hears of it once the lock is released; a release that fails is reported, never unhandled', GUARD, async () => {
  const { engine, locks, errors } = setUp({
    init: async (proc) => {
      assert.equal(await proc.locks.tryLock(RECORD.table, RECORD.key), true);
      throw new Error('database down');
    },
  });
  const gate = deferred<void>();
  locks.gate = gate.promise;
  const entering = engine.acquire({ sessionId: undefined, ip: IP });
  entering.catch(() => {});
  await settle(5);
  assert.notEqual(await engine.lockManager.lockedBy(RECORD), null, 'the release is on its way');
  let rejected = false;
  void entering.catch(() => { rejected = true; });
  await settle(5);
  assert.equal(rejected, false, 'the caller waits for the lock to be released (its retry may need it)');
  gate.resolve();
  await assert.rejects(entering, { code: 'ERR_SESSION_INIT_FAILED' });
  assert.equal(await engine.lockManager.lockedBy(RECORD), null);
  locks.gate = undefined;
  locks.failing = true;
  await assert.rejects(engine.acquire({ sessionId: undefined, ip: IP }), { code: 'ERR_SESSION_INIT_FAILED' });
  await settle(5);
  assert.deepEqual(errors.map((e) => e.code), ['ERR_SESSION_INIT_FAILED', 'ERR_SESSION_INIT_FAILED', 'ERR_SESSION_STORE_UNAVAILABLE']);
  locks.failing = false;
  await engine.stop();
  await settle(5);
  assert.deepEqual(escaped, []);
});

test('a spawned task that ends holding a lock whose release fails: reported, never unhandled; the session goes on', GUARD, async () => {
  const { engine, locks, errors } = setUp();
  const lease = await engine.acquire({ sessionId: undefined, ip: IP });
  const done = deferred<void>();
  locks.failing = true;
  lease.proc.spawn('export', async (task) => {
    assert.equal(await task.locks.tryLock(RECORD.table, RECORD.key), true);
    done.resolve();
  });
  lease.release();
  await done.promise;
  await settle(5);
  assert.deepEqual(errors.map((e) => e.code), ['ERR_SESSION_STORE_UNAVAILABLE']);
  const again = await engine.acquire({ sessionId: lease.sessionId, ip: IP });
  assert.equal(again.sessionId, lease.sessionId);
  again.release();
  locks.failing = false;
  await engine.stop();
  await settle(5);
  assert.deepEqual(escaped, []);
});
