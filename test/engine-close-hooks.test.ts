// onClose failures never stop the teardown, and idle sessions (eviction, timeout) closed without
// waiting: hook with the context intact, teardown, then the close event.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, SessionError, type WebProcess } from '../src/index.js';
import { engineWithErrors, settle } from './helpers.js';
import { track } from './engine-harness.js';
import { IP, open, shutdown, MINUTE, GUARD, type Vars, visit, closesOf, work, assertTornDown, keepLoopAlive } from './engine-close-support.js';

keepLoopAlive();

describe('onClose failures never stop the teardown', () => {
  for (const kind of ['throws', 'rejects'] as const) {
    test(`an onClose that ${kind} is reported as ERR_SESSION_HOOK_FAILED and the locks are still released`, GUARD, async () => {
      const boom = new Error('boom');
      const { engine, errors } = engineWithErrors<Vars>({
        init: () => ({ n: 0 }),
        onClose: kind === 'throws' ? () => { throw boom; } : async () => { await settle(1); throw boom; },
      });
      const closes = closesOf(engine);
      try {
        const lease = await open(engine);
        const id = lease.sessionId;
        await lease.run(() => work(lease));
        lease.release();
        assert.equal(await engine.closeSession(id), true);
        assert.deepEqual(errors.map((e) => [e.code, e.sessionId, e.cause]), [['ERR_SESSION_HOOK_FAILED', id, boom]]);
        assert.equal(engine.stats().hookErrors, 1);
        assert.deepEqual(closes.map((e) => [e.sessionId, e.hookFailures]), [[id, 1]]);
        await assertTornDown(engine, lease.proc);
      } finally {
        await shutdown(engine);
      }
    });
  }

  test('an onClose that hangs past closeTimeoutMs is reported as ERR_SESSION_HOOK_TIMEOUT and the teardown goes on', GUARD, async () => {
    const clock = new ManualClock();
    const { engine, errors } = engineWithErrors<Vars>({ clock, closeTimeoutMs: 5_000, init: () => ({ n: 0 }), onClose: () => new Promise<void>(() => {}) });
    const closes = closesOf(engine);
    try {
      const lease = await open(engine);
      const id = lease.sessionId;
      await lease.run(() => work(lease));
      lease.release();
      const closing = track(engine.closeSession(id));
      clock.advance(4_999);
      await settle();
      assert.equal(closing.settled, false);
      assert.equal(engine.stats().closingSessions, 1);
      assert.equal((await engine.lockManager.lockedBy({ table: 'Customers', key: 42 }))?.processId, lease.proc.processId, 'context intact while the hook runs');
      clock.advance(1);
      await settle();
      assert.equal(closing.value, true);
      assert.deepEqual(errors.map((e) => [e.code, e.sessionId]), [['ERR_SESSION_HOOK_TIMEOUT', id]]);
      assert.equal(engine.stats().hookTimeouts, 1);
      assert.equal(engine.stats().closingSessions, 0);
      assert.deepEqual(closes.map((e) => [e.sessionId, e.hookFailures]), [[id, 1]]);
      await assertTornDown(engine, lease.proc);
    } finally {
      await shutdown(engine, clock);
    }
  });

  test('an onClose that calls closeSession on its own session does not deadlock and runs once', GUARD, async () => {
    const clock = new ManualClock(); // never advanced: a deadlock could not be broken by the hook timeout
    const inner: boolean[] = [];
    let engine!: SessionEngine<Vars>;
    let errors: SessionError[];
    ({ engine, errors } = engineWithErrors<Vars>({ clock, init: () => ({ n: 0 }), onClose: async (proc) => { inner.push(await engine.closeSession(proc.sessionId)); } }));
    try {
      const lease = await open(engine);
      await lease.run(() => work(lease));
      lease.release();
      const closing = track(engine.closeSession(lease.sessionId));
      await settle();
      assert.equal(closing.settled, true, 'a hook closing its own session must not wait on itself');
      assert.equal(closing.value, true);
      assert.deepEqual(inner, [true]);
      assert.deepEqual(errors, []);
      await assertTornDown(engine, lease.proc);
    } finally {
      await shutdown(engine, clock);
    }
  });

  test('a quick onClose is not reported as hung when the clock jumps far past the inactivity deadline', GUARD, async () => {
    const clock = new ManualClock();
    let hooks = 0;
    const { engine, errors } = engineWithErrors<Vars>({ clock, inactiveProcessTimeoutMs: MINUTE, closeTimeoutMs: 1_000, onClose: () => { hooks++; } });
    const closes = closesOf(engine);
    try {
      await visit(engine);
      clock.advance(8 * 60 * MINUTE); // "eight hours pass": the hook returns at once, it cannot have timed out
      await settle();
      assert.equal(hooks, 1);
      assert.deepEqual(closes.map((e) => [e.reason, e.hookFailures]), [['timeout', 0]]);
      assert.deepEqual(errors.map((e) => e.code), []);
      assert.equal(engine.stats().hookTimeouts, 0);
    } finally {
      await shutdown(engine, clock);
    }
  });
});

describe('closing an idle session without waiting (eviction, timeout)', () => {
  /** What happened, in order: the hook (with what it saw), the teardown as the 'close' listener finds it, the event. */
  function observe(engine: SessionEngine<Vars>, log: string[]): void {
    engine.on('close', (event) => log.push(`close ${event.sessionId} ${event.reason} hooks=${event.hooksRun} processes=${event.processCount}`));
  }

  test('an evicted idle session with a synchronous hook is closed before the newcomer gets its lease: hook with the context intact, teardown, then the close event', GUARD, async () => {
    const log: string[] = [];
    let victim: WebProcess<Vars> | undefined;
    let engine!: SessionEngine<Vars>;
    ({ engine } = engineWithErrors<Vars>({
      maxSessions: 1,
      init: () => ({ n: 0 }),
      onClose: (proc, reason) => {
        victim = proc;
        log.push(`hook ${proc.sessionId} ${reason} n=${proc.vars.n} user=${proc.vars.user} position=${proc.selections.get('Customers')?.position} current=${engine.currentSessionId()} aborted=${proc.signal.aborted} closed=${proc.closed}`);
      },
    }));
    engine.on('close', () => log.push(`teardown done: vars=${JSON.stringify(victim?.vars)} tables=${victim?.selections.tables().length} closed=${victim?.closed}`));
    observe(engine, log);
    try {
      const id = await visit(engine, undefined, (lease) => {
        lease.proc.vars.n = 2;
        lease.proc.vars.user = 'ann';
        lease.proc.selections.set('Customers', [7, 42, 99]).position = 2;
      });
      const acquired = engine.acquireNow({ sessionId: undefined, ip: IP });
      assert.ok(!(acquired instanceof Promise), 'a synchronous init gives the lease at once');
      assert.deepEqual(log, [
        `hook ${id} evicted n=2 user=ann position=2 current=${id} aborted=true closed=false`,
        'teardown done: vars={} tables=0 closed=true',
        `close ${id} evicted hooks=1 processes=1`,
      ]);
      assert.equal(engine.stats().closingSessions, 0);
      assert.equal(engine.sessionProcessCount(id), 0);
      assert.equal(await engine.closeSession(id), false, 'the id is dead');
      await settle();
      assert.equal(log.length, 3, 'nothing runs twice later');
      acquired.release();
    } finally {
      await shutdown(engine);
    }
  });

  test('a timed-out idle session with a synchronous hook is closed inside the timer: once, in order, the engine seen as the closing session', GUARD, async () => {
    const clock = new ManualClock();
    const log: string[] = [];
    let engine!: SessionEngine<Vars>;
    ({ engine } = engineWithErrors<Vars>({
      clock,
      inactiveProcessTimeoutMs: MINUTE,
      init: () => ({ n: 0 }),
      onClose: (proc, reason) => { log.push(`hook ${proc.sessionId} ${reason} n=${proc.vars.n} current=${engine.currentSessionId()}`); },
    }));
    observe(engine, log);
    try {
      const id = await visit(engine, undefined, (lease) => { lease.proc.vars.n = 4; });
      clock.advance(MINUTE);
      assert.deepEqual(log, [`hook ${id} timeout n=4 current=${id}`, `close ${id} timeout hooks=1 processes=1`]);
      assert.equal(engine.currentSessionId(), '');
      await settle();
      assert.equal(log.length, 2);
    } finally {
      await shutdown(engine, clock);
    }
  });

  test('synchronous hooks that close each other while timing out run once each and never deadlock', GUARD, async () => {
    const clock = new ManualClock();
    const hooks: string[] = [];
    let ids: string[] = [];
    let engine!: SessionEngine<Vars>;
    ({ engine } = engineWithErrors<Vars>({
      clock,
      inactiveProcessTimeoutMs: MINUTE,
      init: () => ({ n: 0 }),
      // "Log out on every device": each hook closes every other session of the user, synchronously.
      onClose: (proc) => {
        hooks.push(`${proc.sessionId}:${engine.currentSessionId()}`);
        for (const other of ids) if (other !== proc.sessionId) void engine.closeSession(other);
      },
    }));
    const closes = closesOf(engine);
    try {
      ids = [await visit(engine), await visit(engine), await visit(engine)];
      clock.advance(MINUTE);
      await settle();
      assert.deepEqual(hooks.sort(), ids.map((id) => `${id}:${id}`).sort(), 'each hook once, in its own context');
      assert.equal(closes.length, 3);
      assert.equal(engine.stats().sessions, 0);
      assert.equal(engine.stats().closingSessions, 0);
    } finally {
      await shutdown(engine, clock);
    }
  });

  test('an evicted session whose hook returns a promise or which holds a lock closes in the same order, asynchronously', GUARD, async () => {
    for (const kind of ['async hook', 'lock'] as const) {
      const log: string[] = [];
      let victim: WebProcess<Vars> | undefined;
      const { engine } = engineWithErrors<Vars>({
        maxSessions: 1,
        init: () => ({ n: 0 }),
        onClose: kind === 'async hook'
          ? async (proc) => { victim = proc; await settle(1); log.push(`hook n=${proc.vars.n} closed=${proc.closed}`); }
          : (proc) => { victim = proc; log.push(`hook n=${proc.vars.n} closed=${proc.closed}`); },
      });
      engine.on('close', (event) => log.push(`close hooks=${event.hooksRun} vars=${JSON.stringify(victim?.vars)} locks=${victim?.locks.held().length}`));
      try {
        await visit(engine, undefined, async (lease) => {
          lease.proc.vars.n = 1;
          if (kind === 'lock') assert.equal(await lease.proc.locks.tryLock('Customers', 42), true);
        });
        const lease = await open(engine);
        await settle();
        assert.deepEqual(log, ['hook n=1 closed=false', 'close hooks=1 vars={} locks=0'], kind);
        assert.equal(await engine.lockManager.lockedBy({ table: 'Customers', key: 42 }), null, kind);
        lease.release();
      } finally {
        await shutdown(engine);
      }
    }
  });
});
