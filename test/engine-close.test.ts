// The close pipeline of the memory store, engine-level: each of the four reasons, onClose exactly once
// per process (invariant 1), and closing a session that is handling a request (from outside, from inside).
// Closing a session while it handles a request (from outside, from inside): engine-close-in-flight.test.ts.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type CloseReason, type RequestLease } from '../src/index.js';
import { deferred, engineWithErrors, settle } from './helpers.js';
import { track } from './engine-harness.js';
import { IP, open, shutdown, MINUTE, GUARD, type Vars, visit, closesOf, nextClose, type Seen, snapshot, work, assertTornDown, keepLoopAlive } from './engine-close-support.js';

keepLoopAlive();

describe('the close pipeline, for each of the four reasons', () => {
  for (const reason of ['closed', 'timeout', 'evicted', 'shutdown'] as const) {
    test(`'${reason}': onClose runs once with the context intact, then locks, selections and vars are cleared and the id is dead`, GUARD, async () => {
      const clock = new ManualClock();
      const seen: Seen[] = [];
      let inits = 0;
      let engine!: SessionEngine<Vars>;
      ({ engine } = engineWithErrors<Vars>({
        clock,
        maxSessions: 1,
        inactiveProcessTimeoutMs: MINUTE,
        init: () => { inits++; return { n: 0 }; },
        onClose: async (proc, why) => {
          await settle(1); // an async hook: the context stays intact across its awaits
          seen.push(await snapshot(engine, proc, why));
        },
      }));
      const closes = closesOf(engine);
      try {
        const lease = await open(engine);
        const { proc, sessionId: id } = lease;
        await lease.run(() => work(lease));
        lease.release();

        let newcomer: RequestLease<Vars> | undefined;
        if (reason === 'closed') {
          assert.equal(await engine.closeSession(id), true);
        } else if (reason === 'timeout') {
          const closed = nextClose(engine);
          clock.advance(MINUTE);
          await closed;
        } else if (reason === 'evicted') {
          const closed = nextClose(engine);
          newcomer = await open(engine); // maxSessions 1: the idle session makes room
          await closed;
        } else {
          await engine.stop();
        }

        assert.deepEqual(seen, [{
          sessionId: id, processId: proc.processId, name: 'web', reason,
          vars: { n: 3, user: 'ann' }, selection: { keys: [7, 42, 99], position: 1 },
          held: [{ table: 'Customers', key: 42 }], lockHolder: proc.processId,
          current: id, aborted: true, closed: false,
        }]);
        assert.deepEqual(closes.filter((e) => e.sessionId === id).map((e) => [e.reason, e.processCount, e.hookFailures]), [[reason, 1, 0]]);
        assert.equal(engine.stats().closed[reason], 1);
        await assertTornDown(engine, proc);

        if (reason === 'shutdown') {
          await assert.rejects(open(engine, id), { code: 'ERR_SESSION_STOPPED' });
        } else {
          newcomer?.release();
          const before = inits;
          const later = await open(engine, id);
          assert.notEqual(later.sessionId, id);
          assert.equal(later.isNewSession, true);
          assert.notEqual(later.proc, proc);
          assert.deepEqual(later.proc.vars, { n: 0 });
          assert.equal(inits, before + 1);
          later.release();
        }
      } finally {
        await shutdown(engine, clock);
      }
    });
  }
});

describe('invariant 1: onClose runs exactly once per process', () => {
  const TRIGGERS = ['close', 'timeout', 'evict', 'stop'] as const;
  type Trigger = (typeof TRIGGERS)[number];
  const REASON: Record<Trigger, CloseReason> = { close: 'closed', timeout: 'timeout', evict: 'evicted', stop: 'shutdown' };
  const permutations = (items: readonly Trigger[]): Trigger[][] =>
    items.length <= 1 ? [[...items]] : items.flatMap((item, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]));

  test('closeSession, timeout, eviction and stop() fired in the same tick, in every order, run each hook once', GUARD, async () => {
    for (const order of permutations(TRIGGERS)) {
      const clock = new ManualClock();
      const hooks = new Map<string, CloseReason[]>();
      const { engine, errors } = engineWithErrors<Vars>({
        clock,
        maxSessions: 1,
        processesPerSession: 2,
        inactiveProcessTimeoutMs: MINUTE,
        onClose: async (proc, reason) => {
          await settle(1);
          hooks.set(proc.processId, [...(hooks.get(proc.processId) ?? []), reason]);
        },
      });
      const closes = closesOf(engine);
      try {
        // A session with two idle processes.
        const first = await open(engine);
        const second = await open(engine, first.sessionId);
        const victim = first.sessionId;
        const procs = [first.proc.processId, second.proc.processId];
        first.release();
        second.release();
        clock.advance(MINUTE - 1);

        const pending: Promise<unknown>[] = [];
        let closeResult: Promise<boolean> | undefined;
        for (const trigger of order) {
          if (trigger === 'close') pending.push((closeResult = engine.closeSession(victim)));
          else if (trigger === 'timeout') clock.advance(1);
          else if (trigger === 'evict') pending.push(engine.acquire({ sessionId: undefined, ip: IP }).then((lease) => lease.release()));
          else pending.push(engine.stop());
        }
        await Promise.allSettled(pending);
        await engine.stop();

        const label = order.join(' → ');
        assert.equal(await closeResult, true, label);
        assert.deepEqual(procs.map((id) => hooks.get(id)), [[REASON[order[0]!]], [REASON[order[0]!]]], label);
        assert.deepEqual(closes.filter((e) => e.sessionId === victim).map((e) => e.reason), [REASON[order[0]!]], label);
        assert.deepEqual(errors, [], label);
      } finally {
        await shutdown(engine, clock);
      }
    }
  });

  test('closes requested while onClose is still running join the running close and never run the hook again', GUARD, async () => {
    const clock = new ManualClock();
    const gate = deferred();
    let hooks = 0;
    const { engine } = engineWithErrors<Vars>({ clock, maxSessions: 1, inactiveProcessTimeoutMs: MINUTE, closeTimeoutMs: 60 * MINUTE, onClose: async () => { hooks++; await gate.promise; } });
    const closes = closesOf(engine);
    try {
      const id = await visit(engine);
      const first = track(engine.closeSession(id));
      await settle();
      assert.equal(hooks, 1);
      const second = track(engine.closeSession(id));
      clock.advance(10 * MINUTE);
      const newcomer = await open(engine); // nothing to evict: the closing session no longer counts
      newcomer.release();
      const stopped = track(engine.stop());
      await settle();
      assert.equal(first.settled || second.settled || stopped.settled, false);
      gate.resolve();
      await settle();
      assert.equal(first.value, true);
      assert.equal(second.value, true);
      assert.equal(stopped.settled, true);
      assert.equal(hooks, 2, 'one hook for the session, one for the newcomer at stop()');
      assert.deepEqual(closes.filter((e) => e.sessionId === id).map((e) => e.reason), ['closed']);
    } finally {
      gate.resolve();
      await shutdown(engine, clock);
    }
  });
});
