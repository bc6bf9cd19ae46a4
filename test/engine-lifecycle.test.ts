import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  ManualClock,
  MemoryLockManager,
  SessionEngine,
  type CloseEvent,
  type CloseReason,
  type CreateEvent,
  type SessionEngineOptions,
  type SessionVars,
} from '../src/index.js';
import { deferred, engineWithErrors, settle } from './helpers.js';
import { keepLoopAlive, leaseTracker, track, untilAborted } from './engine-harness.js';

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

function record<V extends SessionVars>(engine: SessionEngine<V>): { creates: CreateEvent[]; closes: CloseEvent[] } {
  const creates: CreateEvent[] = [];
  const closes: CloseEvent[] = [];
  engine.on('create', (event) => creates.push(event));
  engine.on('close', (event) => closes.push(event));
  return { creates, closes };
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

describe('reading sessions', () => {
  test('sessionExpiration() is the start of the last request plus inactiveSessionTimeoutMs', GUARD, async () => {
    const clock = new ManualClock();
    const t0 = clock.now();
    const { engine } = engineWithErrors<Vars>({ clock, inactiveSessionTimeoutMs: 60 * MINUTE });
    try {
      const first = await open(engine);
      const id = first.sessionId;
      assert.deepEqual(engine.sessionExpiration(id), new Date(t0 + 60 * MINUTE));
      clock.advance(1_000);
      first.release();
      // The end of a request does not move the cookie's expiry; the next request's start does.
      assert.deepEqual(engine.sessionExpiration(id), new Date(t0 + 60 * MINUTE));
      clock.advance(5_000);
      const second = await open(engine, id);
      assert.deepEqual(engine.sessionExpiration(id), new Date(t0 + 6_000 + 60 * MINUTE));
      const cookie = second.cookie();
      assert.deepEqual(cookie, { action: 'set', sessionId: id, expiresAtMs: t0 + 6_000 + 60 * MINUTE });
      engine.setOption('inactiveSessionTimeoutMs', 10 * MINUTE);
      assert.deepEqual(engine.sessionExpiration(id), new Date(t0 + 6_000 + 10 * MINUTE));
      second.release();
    } finally {
      await shutdown(engine);
    }
  });

  test('sessionExpiration() is null for an unknown or closed id and in scalable mode', GUARD, async () => {
    const { engine } = engineWithErrors<Vars>();
    const { engine: scalable } = engineWithErrors<Vars>({ mode: 'scalable' });
    try {
      assert.equal(engine.sessionExpiration('no-such-session'), null);
      const id = await visit(engine);
      assert.ok(engine.sessionExpiration(id) instanceof Date);
      await engine.closeSession(id);
      assert.equal(engine.sessionExpiration(id), null);

      const live = await visit(scalable);
      assert.equal(scalable.stats().sessions, 1);
      assert.equal(scalable.sessionExpiration(live), null);
    } finally {
      await shutdown(engine);
      await shutdown(scalable);
    }
  });

  test('sessionProcessCount() counts request and spawned processes of a session, 0 for an unknown or closed id', GUARD, async () => {
    const { engine } = engineWithErrors<Vars>({ processesPerSession: 2, init: () => ({ n: 0 }) });
    try {
      assert.equal(engine.sessionProcessCount('no-such-session'), 0);
      const first = await open(engine);
      const id = first.sessionId;
      assert.equal(engine.sessionProcessCount(id), 1);
      const second = await open(engine, id);
      assert.equal(engine.sessionProcessCount(id), 2);
      first.proc.spawn('worker', (proc) => untilAborted(proc.signal));
      assert.equal(engine.sessionProcessCount(id), 3);
      first.release();
      second.release();
      assert.equal(engine.sessionProcessCount(id), 3);
      assert.equal(await engine.closeSession(id), true);
      assert.equal(engine.sessionProcessCount(id), 0);
    } finally {
      await shutdown(engine);
    }
  });

  test('sessions() describes every live session: ip, dates, process count, busy, queue and locks', GUARD, async () => {
    const clock = new ManualClock();
    const t0 = clock.now();
    const { engine } = engineWithErrors<Vars>({ clock, inactiveSessionTimeoutMs: 30 * MINUTE, init: () => ({ n: 0 }) });
    try {
      const a = await open(engine);
      await a.proc.locks.tryLock('Customers', 42);
      clock.advance(2_000);
      a.release();
      clock.advance(1_000);
      const b = await open(engine, undefined, OTHER_IP);
      const queued = open(engine, b.sessionId, OTHER_IP);
      const infos = engine.sessions();
      assert.deepEqual(infos, [
        {
          id: a.sessionId, ip: IP, createdAt: new Date(t0), lastActivityAt: new Date(t0 + 2_000), expiresAt: new Date(t0 + 30 * MINUTE),
          processCount: 1, busy: false, queuedRequests: 0, locks: [{ table: 'Customers', key: 42 }],
        },
        {
          id: b.sessionId, ip: OTHER_IP, createdAt: new Date(t0 + 3_000), lastActivityAt: new Date(t0 + 3_000), expiresAt: new Date(t0 + 3_000 + 30 * MINUTE),
          processCount: 1, busy: true, queuedRequests: 1, locks: [],
        },
      ]);
      b.release();
      (await queued).release();
      assert.equal(engine.sessions().find((s) => s.id === b.sessionId)?.busy, false);
    } finally {
      await shutdown(engine);
    }
  });

  test('stats() counts sessions, processes, closes by reason and refused requests', GUARD, async () => {
    const clock = new ManualClock();
    const { engine } = engineWithErrors<Vars>({ clock, inactiveProcessTimeoutMs: MINUTE, maxQueuedRequests: 0 });
    try {
      const a = await visit(engine);
      const b = await visit(engine);
      const c = await open(engine);
      let stats = engine.stats();
      assert.equal(stats.sessions, 3);
      assert.equal(stats.idleSessions, 2);
      assert.equal(stats.busySessions, 1);
      assert.equal(stats.processes, 3);
      assert.equal(stats.created, 3);

      await engine.closeSession(a);
      await assert.rejects(open(engine, b, OTHER_IP), { code: 'ERR_SESSION_IP_MISMATCH', httpStatus: 400 });
      await assert.rejects(open(engine, c.sessionId), { code: 'ERR_SESSION_QUEUE_FULL' });
      clock.advance(MINUTE); // b times out; c is busy
      await settle();
      stats = engine.stats();
      assert.equal(stats.sessions, 1);
      assert.equal(stats.processes, 1);
      assert.deepEqual(stats.closed, { evicted: 0, timeout: 1, closed: 1, shutdown: 0 });

      const stopped = engine.stop();
      await assert.rejects(open(engine), { code: 'ERR_SESSION_STOPPED' });
      c.release();
      await stopped;
      stats = engine.stats();
      assert.deepEqual(stats.closed, { evicted: 0, timeout: 1, closed: 1, shutdown: 1 });
      assert.deepEqual(stats.rejected, { sessionLimit: 0, processLimit: 0, queueFull: 1, queueTimeout: 0, stopped: 1, ipMismatch: 1, storeUnavailable: 0 });
      assert.equal(stats.created, 3);
      assert.equal(stats.sessions, 0);
      assert.equal(stats.processes, 0);
      assert.equal(stats.closingSessions, 0);
    } finally {
      await shutdown(engine);
    }
  });

  test("'create' fires once per new session (not on reuse) and 'close' reports id, reason and process count", GUARD, async () => {
    const { engine } = engineWithErrors<Vars>({ init: () => ({ n: 0 }) });
    const { creates, closes } = record(engine);
    try {
      const id = await visit(engine);
      await visit(engine, id);
      assert.deepEqual(creates, [{ sessionId: id, ip: IP }]);
      assert.equal(closes.length, 0);
      await engine.closeSession(id);
      assert.equal(closes.length, 1);
      const [event] = closes;
      assert.equal(event?.sessionId, id);
      assert.equal(event?.reason, 'closed' satisfies CloseReason);
      assert.equal(event?.processCount, 1);
      assert.equal(event?.hookFailures, 0);
      assert.equal(typeof event?.durationMs, 'number');
    } finally {
      await shutdown(engine);
    }
  });
});

describe('options', () => {
  test('the constructor rejects an unknown option with a TypeError coded ERR_SESSION_UNKNOWN_OPTION', GUARD, () => {
    assert.throws(
      () => new SessionEngine({ maxSesions: 10 } as unknown as SessionEngineOptions),
      (error: unknown) => error instanceof TypeError && (error as { code?: unknown }).code === 'ERR_SESSION_UNKNOWN_OPTION' && error.message.includes('maxSesions'),
    );
  });

  test('the constructor rejects ill-typed and out-of-range values with a TypeError coded ERR_SESSION_INVALID_OPTION', GUARD, () => {
    const bad: Record<string, unknown>[] = [
      { maxSessions: -1 },
      { maxSessions: 1.5 },
      { maxSessions: '10' },
      { maxConcurrentProcesses: -3 },
      { inactiveProcessTimeoutMs: -1 },
      { inactiveProcessTimeoutMs: Number.NaN },
      { inactiveSessionTimeoutMs: Number.POSITIVE_INFINITY },
      { mode: 'bogus' },
      { cookieName: 'a;b' },
      { cookieName: 'has space' },
      { cookiePath: 'no-leading-slash' },
      { cookieDomain: 'bad domain' },
      { cookieSameSite: 'lax' },
      { cookieSecure: 'yes' },
      { ipValidation: 1 },
      { processesPerSession: -1 },
      { maxQueuedRequests: -1 },
      { closeTimeoutMs: -5 },
      { clock: {} },
      { clock: null },
      { clock: { now: () => Date.now(), setTimer: 5 } }, // would throw at the first timer, outside any request
      { clock: { now: () => 'x' } }, // every deadline and cookie date would be NaN
      { clock: { now: () => Number.NaN } },
      { init: 'not a function' },
      { onClose: 42 },
      { cookieSameSite: 'None', cookieSecure: false },
    ];
    for (const options of bad) {
      assert.throws(
        () => new SessionEngine(options as SessionEngineOptions),
        (error: unknown) => error instanceof TypeError && (error as { code?: unknown }).code === 'ERR_SESSION_INVALID_OPTION',
        `should refuse ${JSON.stringify(options)}`,
      );
    }
  });

  test("the constructor accepts a frozen options object and never mutates the caller's options", GUARD, async () => {
    const options = Object.freeze({ maxSessions: 5, closeTimeoutMs: 1_000 });
    const engine = new SessionEngine(options);
    assert.deepEqual(options, { maxSessions: 5, closeTimeoutMs: 1_000 });
    assert.equal(engine.getOption('maxSessions'), 5);
    assert.equal(engine.getOption('cookieName'), '4DSID');
    await engine.stop();
  });

  test('setOption validates the value, refuses unknown names and leaves the option unchanged on error', GUARD, async () => {
    const { engine } = engineWithErrors({ maxSessions: 7, cookieSameSite: 'None' });
    try {
      const invalid = (error: unknown): boolean => error instanceof TypeError && (error as { code?: unknown }).code === 'ERR_SESSION_INVALID_OPTION';
      const unknown = (error: unknown): boolean => error instanceof TypeError && (error as { code?: unknown }).code === 'ERR_SESSION_UNKNOWN_OPTION';
      assert.throws(() => engine.setOption('maxSessions', -5), invalid);
      assert.throws(() => engine.setOption('maxSessions', 2.5), invalid);
      assert.throws(() => engine.setOption('mode', 'bogus' as never), invalid);
      assert.equal(engine.getOption('maxSessions'), 7);
      assert.equal(engine.getOption('mode'), 'legacy');
      // A combination browsers would reject is refused whole.
      assert.throws(() => engine.setOption('cookieSecure', false), invalid);
      assert.equal(engine.getOption('cookieSecure'), 'auto');
      assert.throws(() => engine.setOption('bogus' as never, 1 as never), unknown);
      assert.throws(() => engine.getOption('bogus' as never), unknown);
      engine.setOption('maxSessions', 9);
      assert.equal(engine.getOption('maxSessions'), 9);
    } finally {
      await shutdown(engine);
    }
  });

  test("getOption('maxSessions') reads as clamped to maxConcurrentProcesses, and the clamp is enforced", GUARD, async () => {
    const { engine } = engineWithErrors({ maxSessions: 50, maxConcurrentProcesses: 2 });
    try {
      assert.equal(engine.getOption('maxSessions'), 2);
      const a = await open(engine);
      const b = await open(engine);
      await assert.rejects(open(engine), { code: 'ERR_SESSION_LIMIT', httpStatus: 503 });
      assert.equal(engine.stats().sessions, 2);
      engine.setOption('maxConcurrentProcesses', 100);
      assert.equal(engine.getOption('maxSessions'), 50);
      engine.setOption('maxSessions', 500);
      assert.equal(engine.getOption('maxSessions'), 100);
      a.release();
      b.release();
    } finally {
      await shutdown(engine);
    }
  });

  test('a lowered inactiveProcessTimeoutMs applies at once to sessions that are already idle', GUARD, async () => {
    const clock = new ManualClock();
    const { engine } = engineWithErrors<Vars>({ clock, inactiveProcessTimeoutMs: 60 * MINUTE });
    const { closes } = record(engine);
    try {
      const a = await visit(engine);
      clock.advance(10 * MINUTE);
      engine.setOption('inactiveProcessTimeoutMs', 15 * MINUTE);
      clock.advance(5 * MINUTE - 1);
      await settle();
      assert.equal(closes.length, 0);
      clock.advance(1);
      await settle();
      assert.deepEqual(closes.map((e) => [e.sessionId, e.reason]), [[a, 'timeout']]);

      // Lowered below the time already spent idle: the session is due now.
      const b = await visit(engine);
      clock.advance(10 * MINUTE);
      await settle();
      assert.equal(closes.length, 1);
      engine.setOption('inactiveProcessTimeoutMs', 5 * MINUTE);
      clock.advance(0);
      await settle();
      assert.deepEqual(closes.map((e) => [e.sessionId, e.reason]), [[a, 'timeout'], [b, 'timeout']]);
    } finally {
      await shutdown(engine);
    }
  });

  test('a lowered maxSessions evicts nothing until a new session is needed', GUARD, async () => {
    const { engine } = engineWithErrors<Vars>({ maxSessions: 10 });
    const { closes } = record(engine);
    try {
      const a = await visit(engine);
      const b = await visit(engine);
      const c = await visit(engine);
      engine.setOption('maxSessions', 1);
      await settle();
      assert.equal(engine.stats().sessions, 3);
      assert.equal(closes.length, 0);
      // Existing sessions keep working: reusing one is not "a new session is needed".
      assert.equal(await visit(engine, a), a);
      assert.equal(engine.stats().sessions, 3);
      const d = await visit(engine);
      await settle();
      assert.deepEqual(closes.map((e) => [e.sessionId, e.reason]), [[b, 'evicted'], [c, 'evicted'], [a, 'evicted']]);
      assert.deepEqual(engine.sessions().map((s) => s.id), [d]);
    } finally {
      await shutdown(engine);
    }
  });
});

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
