// Spawned processes at close (aborted, waited for, hooked) and stop(): refuse new work, drain, close
// every session with 'shutdown'.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type CloseReason } from '../src/index.js';
import { deferred, engineWithErrors, settle } from './helpers.js';
import { track } from './engine-harness.js';
import { open, shutdown, MINUTE, GUARD, type Vars, visit, closesOf, untilAborted, type Seen, snapshot, work, assertTornDown, keepLoopAlive } from './engine-close-support.js';

keepLoopAlive();

describe('spawned processes', () => {
  test('a spawned task keeps its session busy past its deadline; the session times out only after the task ends', GUARD, async () => {
    const clock = new ManualClock();
    const finish = deferred();
    const { engine } = engineWithErrors<Vars>({ clock, maxSessions: 1, inactiveProcessTimeoutMs: MINUTE });
    const closes = closesOf(engine);
    try {
      const lease = await open(engine);
      const id = lease.sessionId;
      lease.proc.spawn('export', () => finish.promise);
      lease.release();
      assert.equal(engine.sessionProcessCount(id), 2);
      assert.equal(engine.sessions()[0]?.busy, true);
      clock.advance(10 * MINUTE);
      await settle();
      assert.equal(closes.length, 0);
      await assert.rejects(open(engine), { code: 'ERR_SESSION_LIMIT' });

      finish.resolve();
      await settle();
      assert.equal(engine.sessionProcessCount(id), 1);
      assert.equal(engine.sessions()[0]?.busy, false);
      clock.advance(MINUTE - 1);
      await settle();
      assert.equal(closes.length, 0);
      clock.advance(1);
      await settle();
      assert.deepEqual(closes.map((e) => [e.sessionId, e.reason]), [[id, 'timeout']]);
    } finally {
      finish.resolve();
      await shutdown(engine, clock);
    }
  });

  test('closing a session aborts its task, waits for the task to end, then runs onClose for each process', GUARD, async () => {
    const log: string[] = [];
    const finish = deferred();
    const hooked: { name: string; processId: string; vars: unknown }[] = [];
    const { engine } = engineWithErrors<Vars>({
      init: () => ({ n: 0 }),
      onClose: (proc) => { log.push(`hook ${proc.name}`); hooked.push({ name: proc.name, processId: proc.processId, vars: structuredClone(proc.vars) }); },
    });
    const closes = closesOf(engine);
    try {
      const lease = await open(engine);
      const id = lease.sessionId;
      const task = lease.proc.spawn('export', async (proc) => {
        await untilAborted(proc.signal);
        log.push('task saw abort');
        await finish.promise;
        proc.vars.saved = true;
        log.push('task end');
      });
      lease.release();
      await settle();
      assert.equal(engine.sessionProcessCount(id), 2);

      const closing = track(engine.closeSession(id));
      await settle();
      assert.equal(task.signal.aborted, true);
      assert.deepEqual(log, ['task saw abort']);
      assert.equal(closing.settled, false, 'the close waits for the task');
      finish.resolve();
      await settle();
      assert.equal(closing.value, true);
      assert.equal(log.indexOf('task end'), 1, 'hooks run after the task ended');
      assert.deepEqual(hooked.map((h) => h.name).sort(), ['export', 'web']);
      assert.deepEqual(new Set(hooked.map((h) => h.processId)), new Set([lease.proc.processId, task.processId]));
      assert.deepEqual(hooked.find((h) => h.name === 'export')?.vars, { n: 0, saved: true });
      assert.deepEqual(closes.map((e) => [e.sessionId, e.processCount]), [[id, 2]]);
      assert.equal(task.closed, true);
      assert.equal(lease.proc.closed, true);
    } finally {
      finish.resolve();
      await shutdown(engine);
    }
  });

  test('a task that ends on its own is torn down without onClose and its locks are released', GUARD, async () => {
    const finish = deferred();
    const hooked: string[] = [];
    const { engine } = engineWithErrors<Vars>({ init: () => ({ n: 0 }), onClose: (proc) => { hooked.push(proc.name); } });
    try {
      const lease = await open(engine);
      const id = lease.sessionId;
      const task = lease.proc.spawn('import', async (proc) => {
        assert.equal(await proc.locks.tryLock('Jobs', 1), true);
        proc.vars.n = 9;
        await finish.promise;
      });
      lease.release();
      await settle();
      assert.equal((await engine.lockManager.lockedBy({ table: 'Jobs', key: 1 }))?.processId, task.processId);
      finish.resolve();
      await settle();
      assert.equal(engine.sessionProcessCount(id), 1);
      assert.equal(task.closed, true);
      assert.deepEqual(task.vars, {});
      assert.equal(await engine.lockManager.lockedBy({ table: 'Jobs', key: 1 }), null);
      assert.deepEqual(hooked, []);
      assert.equal(engine.stats().processes, 1);

      assert.equal(await engine.closeSession(id), true);
      assert.deepEqual(hooked, ['web']);
    } finally {
      finish.resolve();
      await shutdown(engine);
    }
  });

  test('a task that throws is reported as ERR_SESSION_TASK_FAILED and its process ends', GUARD, async () => {
    const boom = new Error('task boom');
    const { engine, errors } = engineWithErrors<Vars>();
    try {
      const lease = await open(engine);
      const task = lease.proc.spawn('flaky', async () => { throw boom; });
      lease.release();
      await settle();
      assert.deepEqual(errors.map((e) => [e.code, e.sessionId, e.cause]), [['ERR_SESSION_TASK_FAILED', lease.sessionId, boom]]);
      assert.equal(engine.stats().taskErrors, 1);
      assert.equal(task.closed, true);
      assert.equal(engine.sessionProcessCount(lease.sessionId), 1);
    } finally {
      await shutdown(engine);
    }
  });

  test('a process of a closed session cannot spawn: ERR_SESSION_CLOSED', GUARD, async () => {
    const { engine } = engineWithErrors<Vars>();
    try {
      const lease = await open(engine);
      lease.release();
      await engine.closeSession(lease.sessionId);
      assert.throws(() => lease.proc.spawn('late', async () => {}), { code: 'ERR_SESSION_CLOSED' });
      await assert.rejects(lease.proc.locks.tryLock('Customers', 1), { code: 'ERR_SESSION_CLOSED' });
    } finally {
      await shutdown(engine);
    }
  });
});

describe('stop()', () => {
  test('stop() refuses every new request, new or known id, with ERR_SESSION_STOPPED (503)', GUARD, async () => {
    const { engine } = engineWithErrors<Vars>();
    try {
      const id = await visit(engine);
      const stopped = engine.stop();
      await assert.rejects(open(engine), { code: 'ERR_SESSION_STOPPED', httpStatus: 503, name: 'SessionError' });
      await assert.rejects(open(engine, id), { code: 'ERR_SESSION_STOPPED', httpStatus: 503 });
      await stopped;
      await assert.rejects(open(engine), { code: 'ERR_SESSION_STOPPED' });
      assert.equal(engine.stats().rejected.stopped, 3);
      assert.equal(engine.stats().created, 1);
    } finally {
      await shutdown(engine);
    }
  });

  test("stop() lets the running request finish before its session's hook runs", GUARD, async () => {
    const seen: Seen[] = [];
    let engine!: SessionEngine<Vars>;
    ({ engine } = engineWithErrors<Vars>({ init: () => ({ n: 0 }), onClose: async (proc, reason) => { seen.push(await snapshot(engine, proc, reason)); } }));
    try {
      const lease = await open(engine);
      const id = lease.sessionId;
      await lease.run(() => work(lease));
      const queued = open(engine, id);
      const stopped = track(engine.stop());
      await assert.rejects(queued, { code: 'ERR_SESSION_STOPPED' });
      await settle();
      assert.equal(stopped.settled, false);
      assert.equal(seen.length, 0);
      assert.deepEqual(lease.cookie(), { action: 'clear' });
      assert.equal(lease.proc.signal.aborted, true);
      lease.proc.vars.n = 5;
      lease.release();
      await settle();
      assert.equal(stopped.settled, true);
      assert.deepEqual(seen.map((s) => [s.sessionId, s.reason, s.vars]), [[id, 'shutdown', { n: 5, user: 'ann' }]]);
      await assertTornDown(engine, lease.proc);
    } finally {
      await shutdown(engine);
    }
  });

  test('stop() awaited from inside a request does not wait on that request (no drain timeout)', GUARD, async () => {
    const clock = new ManualClock(); // never advanced: waiting on itself would only end with the drain timeout
    const hooks: string[] = [];
    const { engine, errors } = engineWithErrors<Vars>({ clock, closeTimeoutMs: 1_000, onClose: (proc, reason) => { hooks.push(reason); } });
    try {
      const lease = await open(engine);
      const handler = track(lease.run(async () => { await engine.stop(); return lease.cookie(); }));
      await settle();
      assert.equal(handler.settled, true, 'stop() from inside a request must not wait for that same request');
      assert.deepEqual(handler.value, { action: 'clear' });
      assert.deepEqual(hooks, ['shutdown']);
      assert.deepEqual(errors.map((e) => e.code), []);
      lease.release();
    } finally {
      await shutdown(engine, clock);
    }
  });

  test("stop() runs every session's onClose exactly once with 'shutdown', and a second stop() runs none", GUARD, async () => {
    const hooks: [string, CloseReason][] = [];
    const { engine } = engineWithErrors<Vars>({ onClose: async (proc, reason) => { await settle(1); hooks.push([proc.sessionId, reason]); } });
    try {
      const ids = [await visit(engine), await visit(engine), await visit(engine)];
      const [s1, s2] = [engine.stop(), engine.stop()];
      await Promise.all([s1, s2]);
      await engine.stop();
      assert.deepEqual(hooks.sort(), ids.map((id) => [id, 'shutdown']).sort());
      assert.deepEqual(engine.stats().closed, { evicted: 0, timeout: 0, closed: 0, shutdown: 3 });
      assert.equal(engine.stats().sessions, 0);
      assert.equal(engine.stats().closingSessions, 0);
    } finally {
      await shutdown(engine);
    }
  });
});
