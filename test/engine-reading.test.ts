// Reading the engine (sessionExpiration, sessionProcessCount, sessions(), stats(), events) and its options.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  ManualClock,
  SessionEngine,
  type CloseReason,
  type SessionEngineOptions,
} from '../src/index.js';
import { engineWithErrors, settle } from './helpers.js';
import { keepLoopAlive, leaseTracker, record, untilAborted } from './engine-harness.js';

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
