// The close pipeline of the memory store, engine-level: closing a session that is handling a request,
// from outside (the close waits for it; its response clears the cookie) and from inside (a logout: the
// hook and teardown run in the request, which goes on with a reset context), and from a callback that
// outlived its request.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, SessionError } from '../src/index.js';
import { deferred, engineWithErrors, settle } from './helpers.js';
import { track } from './engine-harness.js';
import { open, shutdown, GUARD, type Vars, closesOf, type Seen, snapshot, work, assertTornDown, keepLoopAlive } from './engine-close-support.js';

keepLoopAlive();

describe('closing a session that is handling a request', () => {
  test('closeSession from outside waits for the running request: no hook until release, cookie cleared, signal aborted', GUARD, async () => {
    const seen: Seen[] = [];
    let engine!: SessionEngine<Vars>;
    ({ engine } = engineWithErrors<Vars>({ init: () => ({ n: 0 }), onClose: async (proc, reason) => { seen.push(await snapshot(engine, proc, reason)); } }));
    try {
      const lease = await open(engine);
      const id = lease.sessionId;
      await lease.run(() => work(lease));
      assert.equal(lease.cookie().action, 'set');

      const closing = track(engine.closeSession(id));
      await settle();
      assert.equal(closing.settled, false);
      assert.equal(seen.length, 0);
      assert.deepEqual(lease.cookie(), { action: 'clear' });
      assert.equal(lease.proc.signal.aborted, true);
      assert.ok(lease.proc.signal.reason instanceof SessionError);
      assert.equal((lease.proc.signal.reason as SessionError).code, 'ERR_SESSION_CLOSED');
      // The id is dead at once: a request with it gets a new session while the old request still runs.
      const other = await open(engine, id);
      assert.notEqual(other.sessionId, id);
      other.release();

      // The running request goes on with its context and has the last word.
      lease.proc.vars.n = 4;
      lease.release();
      await settle();
      assert.equal(closing.value, true);
      assert.equal(seen.length, 1);
      assert.deepEqual(seen[0]?.vars, { n: 4, user: 'ann' });
      await assertTornDown(engine, lease.proc);
    } finally {
      await shutdown(engine);
    }
  });

  test('a request whose session is being closed from outside, logging out itself meanwhile: the close stops waiting for it (no drain timeout on the clock), the hook runs once', GUARD, async () => {
    const clock = new ManualClock();
    const hooked: string[] = [];
    const { engine, errors } = engineWithErrors<Vars>({ clock, init: () => ({ n: 0 }), onClose: (proc) => { hooked.push(proc.processId); } });
    try {
      const lease = await open(engine);
      const fromOutside = track(engine.closeSession(lease.sessionId));
      await settle();
      assert.equal(fromOutside.settled, false, 'the close waits for the running request');
      const logout = track(lease.run(() => engine.closeSession(lease.sessionId)));
      await settle();
      assert.equal(logout.settled, true, 'the logout does not wait on its own request');
      assert.equal(logout.value, true);
      assert.equal(fromOutside.settled, true);
      assert.deepEqual(hooked, [lease.proc.processId]);
      assert.deepEqual(errors.map((e) => e.code), []);
      lease.release();
    } finally {
      await shutdown(engine);
    }
  });

  test('a logout not awaited runs a synchronous hook within the closeSession call (4D runs the close in the calling process): the hook sees the vars as they were at the call', GUARD, async () => {
    const seen: Vars[] = [];
    const { engine } = engineWithErrors<Vars>({ init: () => ({ n: 0 }), onClose: (proc) => { seen.push(structuredClone(proc.vars)); } });
    try {
      const lease = await open(engine);
      const closing = lease.run(() => {
        lease.proc.vars.user = 'ann';
        const closed = engine.closeSession(lease.sessionId); // not awaited
        assert.deepEqual(seen, [{ n: 0, user: 'ann' }], 'the hook ran before closeSession returned');
        lease.proc.vars.n = 99; // after the call: not the hook's to see
        return closed;
      });
      assert.equal(await closing, true);
      assert.deepEqual(seen, [{ n: 0, user: 'ann' }]);
      assert.deepEqual(lease.proc.vars, {}, 'the context is reset once the close is over');
      lease.release();
    } finally {
      await shutdown(engine);
    }
  });

  test("closeSession from inside the session's own request runs the hook at once, then the handler goes on with a reset context", GUARD, async () => {
    const seen: Seen[] = [];
    let engine!: SessionEngine<Vars>;
    ({ engine } = engineWithErrors<Vars>({ init: () => ({ n: 0 }), onClose: async (proc, reason) => { seen.push(await snapshot(engine, proc, reason)); } }));
    const closes = closesOf(engine);
    try {
      const lease = await open(engine);
      const id = lease.sessionId;
      const handler = track(lease.run(async () => {
        await work(lease);
        const result = await engine.closeSession(id); // logout
        return {
          result,
          hooksBefore: seen.length,
          varsAfter: structuredClone(lease.proc.vars),
          heldAfter: lease.proc.locks.held(),
          holderAfter: await engine.lockManager.lockedBy({ table: 'Customers', key: 42 }),
          cookie: lease.cookie(),
        };
      }));
      await settle();
      assert.equal(handler.settled, true, 'closeSession from inside its own request must not deadlock');
      assert.equal(handler.error, undefined);
      assert.deepEqual(handler.value, { result: true, hooksBefore: 1, varsAfter: {}, heldAfter: [], holderAfter: null, cookie: { action: 'clear' } });
      assert.equal(seen[0]?.reason, 'closed');
      assert.deepEqual(seen[0]?.vars, { n: 3, user: 'ann' });
      assert.deepEqual(seen[0]?.held, [{ table: 'Customers', key: 42 }]);
      assert.equal(closes.length, 1);

      // Releasing the request afterwards changes nothing.
      const before = engine.stats();
      lease.release();
      await settle();
      assert.deepEqual(engine.stats(), before);
      assert.equal(before.processes, 0);
      assert.equal(seen.length, 1);
      assert.equal(closes.length, 1);
      const later = await open(engine, id);
      assert.notEqual(later.sessionId, id);
      later.release();
    } finally {
      await shutdown(engine);
    }
  });

  test('queued requests of a closing session move to one new session, run there one at a time, never in the old context', GUARD, async () => {
    let inits = 0;
    const seen: Seen[] = [];
    let engine!: SessionEngine<Vars>;
    ({ engine } = engineWithErrors<Vars>({ init: () => { inits++; return { n: 0 }; }, onClose: async (proc, reason) => { seen.push(await snapshot(engine, proc, reason)); } }));
    try {
      const lease = await open(engine);
      const id = lease.sessionId;
      await lease.run(() => work(lease));
      const queued = [open(engine, id), open(engine, id)];
      await settle();
      assert.equal(engine.stats().queuedRequests, 2);

      const closing = track(engine.closeSession(id));
      const first = await queued[0]!;
      assert.notEqual(first.sessionId, id);
      assert.equal(first.isNewSession, true);
      assert.notEqual(first.proc, lease.proc);
      assert.deepEqual(first.proc.vars, { n: 0 });
      assert.equal(await first.proc.locks.tryLock('Customers', 42), false, 'the old session still holds its lock until it is torn down');
      // The second request carried the same dead cookie: it joins the first one's new session and waits its turn.
      const second = track(queued[1]!);
      await settle();
      assert.equal(second.settled, false, 'one request at a time in the new session too');
      first.proc.vars.n = 7;
      first.release();
      const secondLease = await queued[1]!;
      assert.equal(secondLease.sessionId, first.sessionId);
      assert.equal(secondLease.proc, first.proc);
      assert.deepEqual(secondLease.proc.vars, { n: 7 });
      const rebound = [secondLease];
      assert.equal(inits, 2, 'one init for the old session, one for the shared new one');
      assert.equal(closing.settled, false);

      lease.release();
      await settle();
      assert.equal(closing.value, true);
      assert.deepEqual(seen.map((s) => [s.sessionId, s.vars]), [[id, { n: 3, user: 'ann' }]]);
      for (const other of rebound) other.release();
    } finally {
      await shutdown(engine);
    }
  });

  test('a request handed the process in the same tick as the close runs in a new session instead', GUARD, async () => {
    const seen: Seen[] = [];
    let engine!: SessionEngine<Vars>;
    ({ engine } = engineWithErrors<Vars>({ init: () => ({ n: 0 }), onClose: async (proc, reason) => { seen.push(await snapshot(engine, proc, reason)); } }));
    try {
      const lease = await open(engine);
      const id = lease.sessionId;
      await lease.run(() => work(lease));
      const next = open(engine, id);
      await settle();
      lease.release(); // hands the process to the queued request...
      const closing = engine.closeSession(id); // ...which has not resumed yet when the session closes
      const other = await next;
      assert.notEqual(other.sessionId, id);
      assert.notEqual(other.proc, lease.proc);
      assert.deepEqual(other.proc.vars, { n: 0 });
      assert.equal(await closing, true);
      assert.deepEqual(seen.map((s) => [s.sessionId, s.vars]), [[id, { n: 3, user: 'ann' }]]);
      await assertTornDown(engine, lease.proc);
      other.release();
    } finally {
      await shutdown(engine);
    }
  });

  test('a request that never ends is given up after closeTimeoutMs (ERR_SESSION_DRAIN_TIMEOUT), then onClose and teardown run', GUARD, async () => {
    const clock = new ManualClock();
    const seen: Seen[] = [];
    let engine!: SessionEngine<Vars>;
    let errors: SessionError[];
    ({ engine, errors } = engineWithErrors<Vars>({ clock, closeTimeoutMs: 1_000, init: () => ({ n: 0 }), onClose: async (proc, reason) => { seen.push(await snapshot(engine, proc, reason)); } }));
    const closes = closesOf(engine);
    try {
      const lease = await open(engine);
      const id = lease.sessionId;
      await lease.run(() => work(lease));
      const closing = track(engine.closeSession(id));
      clock.advance(999);
      await settle();
      assert.equal(closing.settled, false);
      assert.equal(seen.length, 0);
      clock.advance(1);
      await settle();
      assert.equal(closing.value, true);
      assert.deepEqual(errors.map((e) => [e.code, e.sessionId]), [['ERR_SESSION_DRAIN_TIMEOUT', id]]);
      assert.equal(engine.stats().drainTimeouts, 1);
      assert.equal(seen.length, 1);
      assert.deepEqual(seen[0]?.vars, { n: 3, user: 'ann' });
      await assertTornDown(engine, lease.proc);
      // The stuck request ends at last: nothing runs twice, nothing breaks.
      lease.release();
      await settle();
      assert.equal(seen.length, 1);
      assert.equal(closes.length, 1);
      assert.equal(engine.stats().processes, 0);
    } finally {
      await shutdown(engine, clock);
    }
  });
});

test('closeSession from a callback that outlived its request, while another request of the session runs: asked from outside, it waits for that request, whose context stays intact; the hook sees what it left', GUARD, async () => {
  const hooked: unknown[] = [];
  const { engine, errors } = engineWithErrors<Vars>({ onClose: (proc) => { hooked.push(proc.vars.n); } });
  try {
    const first = await open(engine);
    first.proc.vars.n = 1;
    const fire = deferred<void>();
    // The first request leaves a logout for later, in its own async context.
    const logout = track(first.run(() => fire.promise.then(() => engine.closeSession(engine.currentSessionId()))));
    first.release();
    const second = await open(engine, first.sessionId);
    second.proc.vars.n = 2;
    fire.resolve();
    await settle();
    assert.deepEqual(hooked, [], 'no hook while the second request runs');
    assert.equal(second.proc.vars.n, 2, 'its context is intact');
    assert.equal(logout.settled, false, 'the close waits for it');
    second.proc.vars.n = 3;
    second.release();
    await settle();
    assert.equal(logout.value, true);
    assert.deepEqual(hooked, [3]);
    assert.equal(errors.length, 0);
  } finally {
    await shutdown(engine);
  }
});
