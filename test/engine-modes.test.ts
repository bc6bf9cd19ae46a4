// The modes other than 'legacy': 'none' (a throw-away process per request) and 'scalable' (close and hook inert).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  ManualClock,
  MemoryLockManager,
} from '../src/index.js';
import { engineWithErrors, settle } from './helpers.js';
import { keepLoopAlive, leaseTracker, record, track } from './engine-harness.js';

const IP = '192.0.2.10';
const { open, shutdown, visit } = leaseTracker(IP);
const MINUTE = 60_000;
/** Every test is bounded: a hang (a deadlock in the engine) fails that test instead of stalling the run. */
const GUARD = { timeout: 5_000 };

keepLoopAlive();

interface Vars {
  n: number;
  user?: string;
}

function counting(): { init: () => Vars; calls: () => number } {
  let calls = 0;
  return { init: () => { calls++; return { n: 0 }; }, calls: () => calls };
}

describe("mode 'none'", () => {
  test('every request gets a throw-away process: no session id, no cookie, init every time', GUARD, async () => {
    const { init, calls } = counting();
    const { engine } = engineWithErrors<Vars>({ mode: 'none', init });
    const { creates } = record(engine);
    try {
      const first = await open(engine, 'some-cookie-value');
      assert.equal(first.sessionId, '');
      assert.equal(first.proc.sessionId, '');
      assert.deepEqual(first.cookie(), { action: 'none' });
      assert.equal(first.run(() => engine.currentSessionId()), '');
      first.proc.vars.n = 41;
      first.release();
      assert.equal(first.proc.closed, true);
      assert.deepEqual(first.proc.vars, {});

      const second = await open(engine);
      assert.notEqual(second.proc, first.proc);
      assert.deepEqual(second.proc.vars, { n: 0 });
      assert.deepEqual(second.cookie(), { action: 'none' });
      second.release();

      assert.equal(calls(), 2);
      assert.equal(engine.stats().sessions, 0);
      assert.equal(engine.stats().processes, 0);
      assert.deepEqual(engine.sessions(), []);
      assert.equal(creates.length, 0);
      assert.equal(await engine.closeSession(''), false);
    } finally {
      await shutdown(engine);
    }
  });

  test("the throw-away process's record locks are released when its request ends", GUARD, async () => {
    const { engine } = engineWithErrors<Vars>({ mode: 'none' });
    try {
      const first = await open(engine);
      const second = await open(engine);
      assert.equal(await first.proc.locks.tryLock('Invoices', 7), true);
      assert.equal(await second.proc.locks.tryLock('Invoices', 7), false);
      first.release();
      await settle(1);
      assert.deepEqual(first.proc.locks.held(), []);
      assert.equal(await second.proc.locks.tryLock('Invoices', 7), true);
      second.release();
      await settle(1);
      assert.equal(await second.proc.locks.lockedBy('Invoices', 7), null);
    } finally {
      await shutdown(engine);
    }
  });

  test("stop() waits for the 'none'-mode requests in flight, bounded by closeTimeoutMs (then ERR_SESSION_DRAIN_TIMEOUT)", GUARD, async () => {
    const clock = new ManualClock();
    const { engine, errors } = engineWithErrors<Vars>({ mode: 'none', clock, closeTimeoutMs: 1_000 });
    const first = await open(engine);
    const second = await open(engine);
    const stopped = track(engine.stop());
    await settle();
    assert.equal(stopped.settled, false, 'waits for the requests in flight');
    first.release();
    await settle();
    assert.equal(stopped.settled, false, 'one still runs');
    assert.equal(errors.length, 0);
    clock.advance(1_000);
    await settle();
    assert.equal(stopped.settled, true, 'gives up on it after closeTimeoutMs');
    assert.deepEqual(errors.map((e) => e.code), ['ERR_SESSION_DRAIN_TIMEOUT']);
    assert.equal(engine.stats().processes, 1, 'the late request still holds its process');
    second.release();
    assert.equal(engine.stats().processes, 0);
  });

  test("a throw-away process locks records in the engine's own lock manager (the `locks` option)", GUARD, async () => {
    const locks = new MemoryLockManager();
    const { engine } = engineWithErrors<Vars>({ mode: 'none', locks });
    const { engine: unrelated } = engineWithErrors<Vars>({ mode: 'none' });
    try {
      assert.equal(engine.lockManager, locks);
      const lease = await open(engine);
      assert.equal(await lease.proc.locks.tryLock('Invoices', 8), true);
      const holder = await locks.lockedBy({ table: 'Invoices', key: 8 });
      assert.equal(holder?.processId, lease.proc.processId, "the engine's lock manager must see the record locked");
      assert.equal(holder?.sessionId, '');
      // Another engine with its own lock manager does not share this engine's locks.
      const other = await open(unrelated);
      assert.equal(await other.proc.locks.tryLock('Invoices', 8), true);
      other.release();
      lease.release();
    } finally {
      await shutdown(engine);
      await shutdown(unrelated);
    }
  });
});

describe("mode 'scalable'", () => {
  test('sessions live on, but closeSession resolves false and onClose never runs', GUARD, async () => {
    let hooks = 0;
    const { engine } = engineWithErrors<Vars>({ mode: 'scalable', maxSessions: 1, init: () => ({ n: 0 }), onClose: () => { hooks++; } });
    try {
      const id = await visit(engine, undefined, (lease) => { lease.proc.vars.n = 5; });
      assert.equal(await engine.closeSession(id), false);
      const again = await open(engine, id);
      assert.equal(again.sessionId, id);
      assert.deepEqual(again.proc.vars, { n: 5 });
      assert.equal(again.cookie().action, 'set');
      again.release();
      const newcomer = await visit(engine); // evicts `id`
      await settle();
      assert.equal(engine.stats().closed.evicted, 1);
      assert.notEqual(newcomer, id);
      await engine.stop();
      assert.equal(engine.stats().closed.shutdown, 1);
      assert.equal(hooks, 0);
    } finally {
      await shutdown(engine);
    }
  });

  test('evicted and timed-out sessions are still torn down and release their locks', GUARD, async () => {
    const clock = new ManualClock();
    let hooks = 0;
    const { engine } = engineWithErrors<Vars>({ mode: 'scalable', clock, maxSessions: 2, inactiveProcessTimeoutMs: MINUTE, init: () => ({ n: 0 }), onClose: () => { hooks++; } });
    const { closes } = record(engine);
    try {
      const a = await open(engine);
      await a.proc.locks.tryLock('Orders', 1);
      a.proc.selections.set('Orders', [1, 2, 3]);
      a.proc.vars.n = 3;
      a.release();
      const b = await open(engine);
      await b.proc.locks.tryLock('Orders', 2);
      b.release();

      const c = await open(engine); // cap reached: evicts a
      await settle();
      assert.equal(await engine.lockManager.lockedBy({ table: 'Orders', key: 1 }), null);
      assert.equal(a.proc.closed, true);
      assert.deepEqual(a.proc.vars, {});
      assert.deepEqual(a.proc.selections.tables(), []);
      assert.notEqual(await engine.lockManager.lockedBy({ table: 'Orders', key: 2 }), null);
      c.release();

      clock.advance(MINUTE);
      await settle();
      assert.equal(await engine.lockManager.lockedBy({ table: 'Orders', key: 2 }), null);
      assert.equal(b.proc.closed, true);
      assert.deepEqual(closes.map((e) => [e.sessionId, e.reason]).sort(), [[a.sessionId, 'evicted'], [b.sessionId, 'timeout'], [c.sessionId, 'timeout']].sort());
      assert.equal(hooks, 0);
    } finally {
      await shutdown(engine);
    }
  });
});
