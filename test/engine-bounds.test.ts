// Record locks between sessions, and bounded memory (invariant 6).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../src/index.js';
import { engineWithErrors, settle } from './helpers.js';
import { keepLoopAlive, leaseTracker } from './engine-harness.js';

const IP = '203.0.113.5';
const { open, shutdown, visit } = leaseTracker(IP);
/** Every test is bounded: a hang (a deadlock in the engine) fails that test instead of stalling the run. */
const GUARD = { timeout: 5_000 };

keepLoopAlive();

interface Vars {
  n: number;
}

describe('record locks', () => {
  test("a record locked by one session's process cannot be locked by another until it is unlocked", GUARD, async () => {
    const clock = new ManualClock();
    const { engine } = engineWithErrors<Vars>({ clock });
    try {
      const a = await open(engine);
      const b = await open(engine);
      const lockedAt = clock.now();
      assert.equal(await a.proc.locks.tryLock('Customers', 42), true);
      clock.advance(5_000);
      assert.equal(await b.proc.locks.tryLock('Customers', 42), false);
      assert.deepEqual(await b.proc.locks.lockedBy('Customers', 42), { sessionId: a.sessionId, processId: a.proc.processId, sinceMs: lockedAt });
      assert.deepEqual(await engine.lockManager.lockedBy({ table: 'Customers', key: 42 }), { sessionId: a.sessionId, processId: a.proc.processId, sinceMs: lockedAt });
      assert.equal(await b.proc.locks.unlock('Customers', 42), false, 'only the holder can unlock');
      assert.equal((await b.proc.locks.lockedBy('Customers', 42))?.processId, a.proc.processId);
      assert.equal(await a.proc.locks.tryLock('Customers', 42), true, 'the holder may lock again');
      assert.deepEqual(a.proc.locks.held(), [{ table: 'Customers', key: 42 }]);
      assert.deepEqual(b.proc.locks.held(), []);

      // Locks outlive the request: the session keeps them between requests.
      a.release();
      assert.equal(await b.proc.locks.tryLock('Customers', 42), false);
      assert.deepEqual(engine.sessions().find((s) => s.id === a.sessionId)?.locks, [{ table: 'Customers', key: 42 }]);

      assert.equal(await a.proc.locks.unlock('Customers', 42), true);
      assert.deepEqual(a.proc.locks.held(), []);
      assert.equal(await b.proc.locks.tryLock('Customers', 42), true);
      assert.equal((await a.proc.locks.lockedBy('Customers', 42))?.sessionId, b.sessionId);
      b.release();
    } finally {
      await shutdown(engine, clock);
    }
  });

  test("a closed session's locks are released so another session can take them", GUARD, async () => {
    const { engine } = engineWithErrors<Vars>({ maxSessions: 2 });
    try {
      const a = await open(engine);
      for (const key of [1, 2, 3]) assert.equal(await a.proc.locks.tryLock('Orders', key), true);
      a.release();
      const b = await open(engine);
      assert.equal(await b.proc.locks.tryLock('Orders', 2), false);
      b.release();

      assert.equal(await engine.closeSession(a.sessionId), true);
      const c = await open(engine, b.sessionId);
      for (const key of [1, 2, 3]) assert.equal(await c.proc.locks.tryLock('Orders', key), true, `Orders ${key}`);
      c.release();

      // Eviction releases them too.
      const d = await open(engine);
      assert.equal(await d.proc.locks.tryLock('Orders', 1), false);
      d.release();
      const e = await open(engine); // evicts b (least recently active)
      await settle();
      for (const key of [1, 2, 3]) assert.equal(await e.proc.locks.tryLock('Orders', key), true, `Orders ${key} after eviction`);
      e.release();
    } finally {
      await shutdown(engine);
    }
  });
});

describe('memory is bounded (invariant 6)', () => {
  test('with maxSessions N, 10×N newcomers leave at most N live sessions and no closing ones', GUARD, async () => {
    const N = 5;
    let hooks = 0;
    const { engine } = engineWithErrors<Vars>({ maxSessions: N, onClose: async () => { await settle(1); hooks++; } });
    try {
      for (let i = 0; i < 10 * N; i++) {
        await visit(engine);
        assert.ok(engine.stats().sessions <= N, `after newcomer ${i + 1}: ${engine.stats().sessions} sessions`);
      }
      await settle();
      const stats = engine.stats();
      assert.equal(stats.sessions, N);
      assert.equal(stats.processes, N);
      assert.equal(stats.closingSessions, 0);
      assert.equal(stats.closed.evicted, 9 * N);
      assert.equal(hooks, 9 * N);
      assert.equal(engine.sessions().length, N);
    } finally {
      await shutdown(engine);
    }
  });

  test('sessions whose onClose hangs are dropped after closeTimeoutMs, so closing sessions do not pile up', GUARD, async () => {
    const N = 3;
    const clock = new ManualClock();
    const { engine, errors } = engineWithErrors<Vars>({ clock, maxSessions: N, closeTimeoutMs: 1_000, onClose: () => new Promise<void>(() => {}) });
    try {
      for (let i = 0; i < 10 * N; i++) await visit(engine);
      await settle();
      assert.equal(engine.stats().sessions, N);
      assert.equal(engine.stats().closingSessions, 9 * N);
      clock.advance(1_000);
      await settle();
      assert.equal(engine.stats().closingSessions, 0);
      assert.equal(engine.stats().hookTimeouts, 9 * N);
      assert.equal(errors.length, 9 * N);
    } finally {
      await shutdown(engine, clock);
    }
  });
});
