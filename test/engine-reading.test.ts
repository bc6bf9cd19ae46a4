// Reading the engine: sessionExpiration, sessionProcessCount, sessions(), stats(), events.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  ManualClock,
  type CloseReason,
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
