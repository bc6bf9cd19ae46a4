import { after, before, test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  ManualClock,
  SessionEngine,
  SessionError,
  type CloseEvent,
  type CloseReason,
  type LockRef,
  type RequestLease,
  type Selection,
  type SessionVars,
  type WebProcess,
} from '../src/index.js';
import { deferred, engineWithErrors, settle } from './helpers.js';
import { leaseTracker, track } from './engine-harness.js';

const IP = '198.51.100.7';
const { open, shutdown } = leaseTracker(IP);
const MINUTE = 60_000;
/** Every test is bounded: a hang (a deadlock in the engine) fails that test instead of stalling the run. */
const GUARD = { timeout: 5_000 };

// Engine timers are unref'ed: without this, a hung test would end the event loop and cancel every later test.
let keepAlive: NodeJS.Timeout | undefined;
before(() => { keepAlive = setInterval(() => {}, 60_000); });
after(() => clearInterval(keepAlive));

interface Vars {
  n: number;
  user?: string;
  saved?: boolean;
}

/** One complete request: acquire, optional work on the process, release. Returns the session id. */
async function visit<V extends SessionVars>(engine: SessionEngine<V>, sessionId?: string, work?: (lease: RequestLease<V>) => void | Promise<void>): Promise<string> {
  const lease = await open(engine, sessionId);
  try {
    await lease.run(async () => work?.(lease));
  } finally {
    lease.release();
  }
  return lease.sessionId;
}

function closesOf<V extends SessionVars>(engine: SessionEngine<V>): CloseEvent[] {
  const closes: CloseEvent[] = [];
  engine.on('close', (event) => closes.push(event));
  return closes;
}

function nextClose<V extends SessionVars>(engine: SessionEngine<V>): Promise<CloseEvent> {
  return new Promise((resolve) => engine.once('close', resolve));
}

/** Resolves when the signal aborts (at once if it already has). */
function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

/** What a hook saw of its process. */
interface Seen {
  sessionId: string;
  processId: string;
  name: string;
  reason: CloseReason;
  vars: unknown;
  selection: Selection | undefined;
  held: LockRef[];
  lockHolder: string | undefined;
  current: string;
  aborted: boolean;
  closed: boolean;
}

async function snapshot<V extends SessionVars>(engine: SessionEngine<V>, proc: WebProcess<V>, reason: CloseReason): Promise<Seen> {
  const selection = proc.selections.get('Customers');
  return {
    sessionId: proc.sessionId,
    processId: proc.processId,
    name: proc.name,
    reason,
    vars: structuredClone(proc.vars),
    selection: selection === undefined ? undefined : { keys: [...selection.keys], position: selection.position },
    held: proc.locks.held(),
    lockHolder: (await engine.lockManager.lockedBy({ table: 'Customers', key: 42 }))?.processId,
    current: engine.currentSessionId(),
    aborted: proc.signal.aborted,
    closed: proc.closed,
  };
}

/** A request that leaves a recognisable context behind: vars, a positioned selection, a record lock. */
async function work(lease: RequestLease<Vars>): Promise<void> {
  lease.proc.vars.n = 3;
  lease.proc.vars.user = 'ann';
  lease.proc.selections.set('Customers', [7, 42, 99]).position = 1;
  assert.equal(await lease.proc.locks.tryLock('Customers', 42), true);
}

async function assertTornDown<V extends SessionVars>(engine: SessionEngine<V>, proc: WebProcess<V>): Promise<void> {
  assert.deepEqual(proc.locks.held(), []);
  assert.equal(await engine.lockManager.lockedBy({ table: 'Customers', key: 42 }), null);
  assert.deepEqual(proc.selections.tables(), []);
  assert.equal(proc.selections.get('Customers'), undefined);
  assert.deepEqual(proc.vars, {});
  assert.equal(proc.closed, true);
}

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
