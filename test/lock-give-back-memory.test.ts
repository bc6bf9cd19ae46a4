// The memory store with an application's lock manager (a networked one: its calls take a round trip and
// can fail). A tryLock in flight when its process is torn down (a logout) is given back by tryLock; a
// give-back that fails (rejects, or throws at the call as a client failing fast does) is reported as a
// teardown's failed release is (ERR_SESSION_STORE_UNAVAILABLE on 'error', counted in storeErrors), and
// tryLock answers false: never the manager's raw error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryLockManager, SessionEngine, type LockManager, type LockOwner, type LockRef, type SessionError } from '../src/index.js';
import { deferred } from './helpers.js';

type Vars = Record<string, unknown>;

/** A lock manager whose tryLock lands when the test says, and whose next releases fail when told. */
class GatedLocks implements LockManager {
  readonly inner = new MemoryLockManager();
  gate = deferred();
  failReleases = 0;
  /** Fail by throwing at the call rather than by rejecting. */
  throwAtCall = false;
  async tryLock(owner: LockOwner, ref: LockRef): Promise<boolean> {
    const ok = await this.inner.tryLock(owner, ref);
    await this.gate.promise;
    return ok;
  }
  unlock(owner: LockOwner, ref: LockRef): Promise<boolean> { return this.inner.unlock(owner, ref); }
  lockedBy(ref: LockRef): ReturnType<LockManager['lockedBy']> { return this.inner.lockedBy(ref); }
  releaseAll(owner: LockOwner, refs: readonly LockRef[]): Promise<number> {
    if (this.failReleases > 0) {
      this.failReleases--;
      const error = new Error('injected: lock service unreachable');
      if (this.throwAtCall) throw error;
      return Promise.reject(error);
    }
    return this.inner.releaseAll(owner, refs);
  }
}

for (const [name, failures, throwAtCall] of [['lands', 0, false], ['fails once', 1, false], ['throws at the call', 1, true]] as const) {
  test(`memory store, networked lock manager: a tryLock that lands after a logout tore its process down answers false; its give-back ${name}`, { timeout: 10_000 }, async () => {
    const locks = new GatedLocks();
    locks.throwAtCall = throwAtCall;
    const engine = new SessionEngine<Vars>({ locks });
    const errors: SessionError[] = [];
    engine.on('error', (e) => errors.push(e));
    const a = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
    const taking = a.run(() => a.proc.locks.tryLock('Stock', 42)).then((v) => ({ v }), (e: unknown) => ({ e }));
    assert.equal(await a.run(() => engine.closeSession(engine.currentSessionId())), true);
    assert.ok(a.proc.closed);
    locks.failReleases = failures;
    locks.gate.resolve();
    const outcome = await taking;
    a.release();
    await engine.stop();
    assert.deepEqual(outcome, { v: false }, 'tryLock answers false (the process is torn down), never the raw error');
    const holder = await locks.inner.lockedBy({ table: 'Stock', key: 42 });
    if (failures === 0) {
      assert.equal(holder, null, 'given back');
      assert.deepEqual(errors, []);
    } else {
      assert.deepEqual(errors.map((e) => [e.code, (e.cause as Error).message]), [['ERR_SESSION_STORE_UNAVAILABLE', 'injected: lock service unreachable']], 'reported as a teardown\'s failed release');
      assert.equal(engine.stats().storeErrors, 1);
    }
  });
}
