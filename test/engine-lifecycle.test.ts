// The engine's request binding: new and known ids, init, the lease without a promise, currentSessionId().
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  ManualClock,
  SessionEngine,
} from '../src/index.js';
import { deferred, engineWithErrors, settle } from './helpers.js';
import { keepLoopAlive, leaseTracker, record, track } from './engine-harness.js';

const IP = '192.0.2.10';
const { open, shutdown, visit } = leaseTracker(IP);
const OTHER_IP = '192.0.2.99';
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

describe('binding requests to sessions', () => {
  test('a request without a session id gets a new session with a server-chosen random id', GUARD, async () => {
    const { engine } = engineWithErrors<Vars>({ init: () => ({ n: 0 }) });
    try {
      const first = await open(engine);
      const second = await open(engine);
      assert.equal(first.isNewSession, true);
      assert.match(first.sessionId, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      assert.notEqual(first.sessionId, second.sessionId);
      assert.equal(first.proc.sessionId, first.sessionId);
      assert.notEqual(first.proc, second.proc);
      assert.equal(engine.stats().sessions, 2);
      first.release();
      second.release();
    } finally {
      await shutdown(engine);
    }
  });

  test('an unknown session id is never adopted: the request gets a new session under a new id', GUARD, async () => {
    const { engine } = engineWithErrors<Vars>({ init: () => ({ n: 0 }) });
    try {
      const lease = await open(engine, 'chosen-by-the-client');
      assert.equal(lease.isNewSession, true);
      assert.notEqual(lease.sessionId, 'chosen-by-the-client');
      assert.equal(engine.sessionProcessCount('chosen-by-the-client'), 0);
      assert.equal(engine.stats().created, 1);
      lease.release();
    } finally {
      await shutdown(engine);
    }
  });

  test('a known session id is bound to the same session and the same process', GUARD, async () => {
    const { engine } = engineWithErrors<Vars>({ init: () => ({ n: 0 }) });
    try {
      const first = await open(engine);
      first.release();
      const second = await open(engine, first.sessionId);
      assert.equal(second.sessionId, first.sessionId);
      assert.equal(second.isNewSession, false);
      assert.equal(second.proc, first.proc);
      assert.equal(engine.stats().created, 1);
      second.release();
    } finally {
      await shutdown(engine);
    }
  });

  test('init runs once per new session, inside that session, and not again when the session is reused', GUARD, async () => {
    const seen: { procSession: string; current: string }[] = [];
    let calls = 0;
    let engine: SessionEngine<Vars>;
    ({ engine } = engineWithErrors<Vars>({
      init: (proc) => {
        calls++;
        seen.push({ procSession: proc.sessionId, current: engine.currentSessionId() });
        return { n: 0 };
      },
    }));
    try {
      const a = await visit(engine);
      await visit(engine, a);
      await visit(engine, a);
      const b = await visit(engine);
      assert.equal(calls, 2);
      assert.deepEqual(seen, [{ procSession: a, current: a }, { procSession: b, current: b }]);
    } finally {
      await shutdown(engine);
    }
  });

  test('process variables persist from one request of a session to the next', GUARD, async () => {
    const { engine } = engineWithErrors<Vars>({ init: () => ({ n: 0 }) });
    try {
      const id = await visit(engine, undefined, (lease) => { lease.proc.vars.n++; lease.proc.vars.user = 'ann'; });
      await visit(engine, id, (lease) => { lease.proc.vars.n++; });
      const third = await open(engine, id);
      assert.deepEqual(third.proc.vars, { n: 2, user: 'ann' });
      third.release();
    } finally {
      await shutdown(engine);
    }
  });

  test('an id whose cookie lifetime has passed gets a new session even while its process is still alive', GUARD, async () => {
    const clock = new ManualClock();
    const { init, calls } = counting();
    const { engine } = engineWithErrors<Vars>({ clock, init, inactiveSessionTimeoutMs: MINUTE, inactiveProcessTimeoutMs: 10 * MINUTE });
    try {
      const id = await visit(engine);
      clock.advance(MINUTE - 1);
      // One millisecond before the cookie expires: same session, and the request refreshes the cookie.
      assert.equal(await visit(engine, id), id);
      clock.advance(MINUTE);
      const lease = await open(engine, id);
      assert.notEqual(lease.sessionId, id);
      assert.equal(lease.isNewSession, true);
      assert.deepEqual(lease.proc.vars, { n: 0 });
      assert.equal(calls(), 2);
      lease.release();
    } finally {
      await shutdown(engine);
    }
  });

  test('a request from another IP is refused with ERR_SESSION_IP_MISMATCH (400) and leaves the session untouched', GUARD, async () => {
    const clock = new ManualClock();
    const t0 = clock.now();
    const { engine } = engineWithErrors<Vars>({ clock, inactiveSessionTimeoutMs: MINUTE });
    try {
      const id = await visit(engine);
      clock.advance(30_000);
      await assert.rejects(open(engine, id, OTHER_IP), { code: 'ERR_SESSION_IP_MISMATCH', httpStatus: 400, sessionId: id });
      assert.deepEqual(engine.sessionExpiration(id), new Date(t0 + MINUTE));
      assert.equal(engine.sessions()[0]?.lastActivityAt.getTime(), t0);
      assert.equal(await visit(engine, id), id);
    } finally {
      await shutdown(engine, clock);
    }
  });

  test('a session whose init throws is discarded: acquire rejects ERR_SESSION_INIT_FAILED, said on the error event too (handlerErrors), and no session remains', GUARD, async () => {
    const { engine, errors } = engineWithErrors<Vars>({ init: () => { throw new Error('database down'); } });
    const { creates } = record(engine);
    try {
      await assert.rejects(open(engine), (error: unknown) => {
        assert.equal((error as { code?: unknown }).code, 'ERR_SESSION_INIT_FAILED');
        assert.equal(((error as Error).cause as Error).message, 'database down');
        return true;
      });
      assert.deepEqual(errors.map((e) => [e.code, (e.cause as Error).message]), [['ERR_SESSION_INIT_FAILED', 'database down']]);
      assert.equal(engine.stats().handlerErrors, 1);
      assert.equal(engine.stats().sessions, 0);
      assert.equal(engine.stats().processes, 0);
      assert.deepEqual(engine.sessions(), []);
      assert.equal(creates.length, 0);
    } finally {
      await shutdown(engine);
    }
  });

  test('an init that fails while its session closes: the close neither waits for that process (no drain timeout) nor hooks it (it never had a context)', GUARD, async () => {
    const clock = new ManualClock();
    const initDone = deferred<Vars>();
    const hooked: string[] = [];
    const { engine, errors } = engineWithErrors<Vars>({ clock, init: () => initDone.promise, onClose: (proc) => { hooked.push(proc.processId); } });
    try {
      const entering = open(engine);
      entering.catch(() => {});
      await settle();
      const id = engine.sessions()[0]?.id;
      assert.ok(id !== undefined, 'the session exists while its init runs');
      const closing = track(engine.closeSession(id));
      await settle();
      assert.equal(closing.settled, false, 'the close waits for the process being made');
      initDone.reject(new Error('database down'));
      await assert.rejects(entering, { code: 'ERR_SESSION_INIT_FAILED' });
      await settle();
      assert.equal(closing.settled, true, 'the close ends without waiting closeTimeoutMs on the clock');
      assert.equal(closing.value, true);
      assert.deepEqual(hooked, []);
      assert.deepEqual(errors.map((e) => e.code), ['ERR_SESSION_INIT_FAILED']);
    } finally {
      await shutdown(engine);
    }
  });

  test("a failed init of a session's extra process leaves no uninitialised process: the next request runs init again", GUARD, async () => {
    let calls = 0;
    const { engine } = engineWithErrors<Vars>({
      processesPerSession: 2,
      init: () => {
        calls++;
        if (calls === 2) throw new Error('flaky');
        return { n: 0 };
      },
    });
    try {
      const first = await open(engine);
      await assert.rejects(open(engine, first.sessionId), { code: 'ERR_SESSION_INIT_FAILED' });
      assert.equal(engine.sessionProcessCount(first.sessionId), 1, 'the process whose init failed must not stay in the session');
      const second = await open(engine, first.sessionId);
      assert.notEqual(second.proc, first.proc);
      assert.deepEqual(second.proc.vars, { n: 0 }, 'a request must never run in a process init did not build');
      assert.equal(calls, 3);
      first.release();
      second.release();
    } finally {
      await shutdown(engine);
    }
  });
});

describe('acquireNow(): the lease without a promise when nothing has to wait', () => {
  const isPromise = (value: unknown): boolean => value instanceof Promise;

  test('a returning request whose process is free, and a new session with a synchronous init, get the lease itself', GUARD, async () => {
    const { engine } = engineWithErrors<Vars>({ init: () => ({ n: 0 }) });
    try {
      const created = engine.acquireNow({ sessionId: undefined, ip: IP });
      assert.ok(!isPromise(created) && 'proc' in created);
      assert.equal(created.isNewSession, true);
      created.proc.vars.n = 7;
      created.release();
      const again = engine.acquireNow({ sessionId: created.sessionId, ip: IP });
      assert.ok(!isPromise(again) && 'proc' in again);
      assert.equal(again.proc, created.proc);
      assert.equal(again.isNewSession, false);
      assert.equal(again.run(() => engine.currentSessionId()), created.sessionId);
      again.release();
    } finally {
      await shutdown(engine);
    }
  });

  test('a request that has to wait (busy session, asynchronous init) gets a promise; a refusal throws at once while acquire() rejects', GUARD, async () => {
    const { engine } = engineWithErrors<Vars>({ init: async () => { await settle(1); return { n: 0 }; } });
    try {
      const pending = engine.acquireNow({ sessionId: undefined, ip: IP });
      assert.ok(pending instanceof Promise, 'an asynchronous init is waited for');
      const first = await pending;
      const queued = engine.acquireNow({ sessionId: first.sessionId, ip: IP });
      assert.ok(queued instanceof Promise, 'a busy session queues the request');
      const waiting = track(queued);
      await settle();
      assert.equal(waiting.settled, false);
      first.release();
      const second = await queued;
      assert.equal(second.proc, first.proc);
      assert.throws(() => engine.acquireNow({ sessionId: first.sessionId, ip: OTHER_IP }), { code: 'ERR_SESSION_IP_MISMATCH', httpStatus: 400 });
      const refused = engine.acquire({ sessionId: first.sessionId, ip: OTHER_IP });
      assert.ok(refused instanceof Promise, 'acquire() always answers with a promise');
      await assert.rejects(refused, { code: 'ERR_SESSION_IP_MISMATCH' });
      second.release();
    } finally {
      await shutdown(engine);
    }
  });
});

describe('currentSessionId()', () => {
  test("is the request's session inside lease.run, across awaits and interleaved sessions, and '' outside", GUARD, async () => {
    const { engine } = engineWithErrors<Vars>({ init: () => ({ n: 0 }) });
    try {
      assert.equal(engine.currentSessionId(), '');
      const a = await open(engine);
      const b = await open(engine);
      const inside: string[] = [];
      await Promise.all([
        a.run(async () => { inside.push(`a1:${engine.currentSessionId()}`); await settle(2); inside.push(`a2:${engine.currentSessionId()}`); }),
        b.run(async () => { inside.push(`b1:${engine.currentSessionId()}`); await settle(1); inside.push(`b2:${engine.currentSessionId()}`); }),
      ]);
      assert.deepEqual(inside.sort(), [`a1:${a.sessionId}`, `a2:${a.sessionId}`, `b1:${b.sessionId}`, `b2:${b.sessionId}`].sort());
      assert.equal(engine.currentSessionId(), '');
      a.release();
      b.release();
      assert.equal(engine.currentSessionId(), '');
    } finally {
      await shutdown(engine);
    }
  });

  test('inside onClose it is the closing session, even when another session closes it', GUARD, async () => {
    const inHook: string[] = [];
    let engine: SessionEngine<Vars>;
    ({ engine } = engineWithErrors<Vars>({ init: () => ({ n: 0 }), onClose: () => { inHook.push(engine.currentSessionId()); } }));
    try {
      const a = await visit(engine);
      const b = await open(engine);
      const after = await b.run(async () => {
        assert.equal(await engine.closeSession(a), true);
        return engine.currentSessionId();
      });
      assert.deepEqual(inHook, [a]);
      assert.equal(after, b.sessionId);
      b.release();
    } finally {
      await shutdown(engine);
    }
  });
});
