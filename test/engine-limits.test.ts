// The engine's limits on sessions: eviction of the least recently active idle one, busy sessions never closed, the inactivity timeout.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type SessionEngine, type SessionVars } from '../src/index.js';
import { deferred, engineWithErrors, settle } from './helpers.js';
import { keepLoopAlive, leaseTracker, record } from './engine-harness.js';

const IP = '203.0.113.5';
const { open, shutdown, visit } = leaseTracker(IP);
const MINUTE = 60_000;
/** Every test is bounded: a hang (a deadlock in the engine) fails that test instead of stalling the run. */
const GUARD = { timeout: 5_000 };

keepLoopAlive();

interface Vars {
  n: number;
}

function liveIds<V extends SessionVars>(engine: SessionEngine<V>): string[] {
  return engine.sessions().map((s) => s.id).sort();
}

describe('eviction (invariant 5)', () => {
  test('the evicted session is the one whose last request ended longest ago, not the oldest created', GUARD, async () => {
    const clock = new ManualClock();
    const { engine } = engineWithErrors<Vars>({ clock, maxSessions: 3 });
    const { closes } = record(engine);
    try {
      const a = await visit(engine);
      clock.advance(1_000);
      const b = await visit(engine);
      clock.advance(1_000);
      const c = await visit(engine);
      clock.advance(1_000);
      await visit(engine, a); // a is now the most recently active
      clock.advance(1_000);

      const d = await visit(engine);
      assert.deepEqual(liveIds(engine), [a, c, d].sort());
      const e = await visit(engine);
      assert.deepEqual(liveIds(engine), [a, d, e].sort());
      await settle();
      assert.deepEqual(closes.map((x) => [x.sessionId, x.reason]), [[b, 'evicted'], [c, 'evicted']]);
    } finally {
      await shutdown(engine, clock);
    }
  });

  test('the idle order follows the end of the last request, not its start', GUARD, async () => {
    const clock = new ManualClock();
    const { engine } = engineWithErrors<Vars>({ clock, maxSessions: 2 });
    try {
      const a = await visit(engine);
      const b = await visit(engine);
      const longRequest = await open(engine, a); // starts first...
      clock.advance(1_000);
      const shortRequest = await open(engine, b);
      clock.advance(1_000);
      shortRequest.release();
      clock.advance(1_000);
      longRequest.release(); // ...but ends last: a is the most recently active
      const c = await visit(engine);
      assert.deepEqual(liveIds(engine), [a, c].sort());
    } finally {
      await shutdown(engine, clock);
    }
  });

  test('busy sessions are skipped: the least recently active idle session is evicted instead', GUARD, async () => {
    const clock = new ManualClock();
    const { engine } = engineWithErrors<Vars>({ clock, maxSessions: 3 });
    const { closes } = record(engine);
    try {
      const a = await visit(engine);
      clock.advance(1_000);
      const b = await visit(engine);
      clock.advance(1_000);
      const c = await visit(engine);
      clock.advance(1_000);
      const busy = await open(engine, a); // the least recently active, but busy now
      const d = await open(engine);
      assert.deepEqual(liveIds(engine), [a, c, d.sessionId].sort());
      await settle();
      assert.deepEqual(closes.map((x) => [x.sessionId, x.reason]), [[b, 'evicted']]);
      busy.release();
      d.release();
    } finally {
      await shutdown(engine, clock);
    }
  });

  test('with every session busy at the cap, acquire rejects ERR_SESSION_LIMIT (503) and creates nothing', GUARD, async () => {
    let inits = 0;
    const { engine } = engineWithErrors<Vars>({ maxSessions: 2, init: () => { inits++; return { n: 0 }; } });
    const { creates, closes } = record(engine);
    try {
      const a = await open(engine);
      const b = await open(engine);
      const before = engine.stats();
      await assert.rejects(open(engine), { name: 'SessionError', code: 'ERR_SESSION_LIMIT', httpStatus: 503 });
      const after = engine.stats();
      assert.equal(after.sessions, before.sessions);
      assert.equal(after.created, before.created);
      assert.equal(after.processes, before.processes);
      assert.equal(after.rejected.sessionLimit, 1);
      assert.equal(creates.length, 2);
      assert.equal(closes.length, 0);
      assert.equal(inits, 2);
      assert.deepEqual(liveIds(engine), [a.sessionId, b.sessionId].sort());

      a.release(); // now there is an idle session to make room
      const c = await open(engine);
      assert.deepEqual(liveIds(engine), [b.sessionId, c.sessionId].sort());
      b.release();
      c.release();
    } finally {
      await shutdown(engine);
    }
  });
});

describe('busy sessions are never closed (invariant 4)', () => {
  test('a session with a running request is neither evicted nor timed out however long it runs, and times out once idle', GUARD, async () => {
    const clock = new ManualClock();
    const { engine } = engineWithErrors<Vars>({ clock, maxSessions: 1, inactiveProcessTimeoutMs: MINUTE });
    const { closes } = record(engine);
    try {
      const lease = await open(engine);
      clock.advance(100 * MINUTE);
      await settle();
      assert.equal(closes.length, 0);
      await assert.rejects(open(engine), { code: 'ERR_SESSION_LIMIT' });
      assert.deepEqual(liveIds(engine), [lease.sessionId]);

      lease.release(); // idle from now on
      clock.advance(MINUTE - 1);
      await settle();
      assert.equal(closes.length, 0);
      clock.advance(1);
      await settle();
      assert.deepEqual(closes.map((e) => [e.sessionId, e.reason]), [[lease.sessionId, 'timeout']]);
    } finally {
      await shutdown(engine, clock);
    }
  });

  test('a session with a queued request stays open until that request has run too', GUARD, async () => {
    const clock = new ManualClock();
    // The queued request outlives the session timeout many times over (no queue timeout before it runs).
    const { engine } = engineWithErrors<Vars>({ clock, maxSessions: 1, inactiveProcessTimeoutMs: MINUTE, queueTimeoutMs: 1_000 * MINUTE });
    const { closes } = record(engine);
    try {
      const first = await open(engine);
      const id = first.sessionId;
      const queued = open(engine, id);
      clock.advance(100 * MINUTE);
      await settle();
      assert.equal(closes.length, 0);
      await assert.rejects(open(engine), { code: 'ERR_SESSION_LIMIT' });

      first.release(); // hands the process to the queued request: the session stays busy
      const second = await queued;
      assert.equal(second.sessionId, id);
      clock.advance(100 * MINUTE);
      await settle();
      assert.equal(closes.length, 0);
      await assert.rejects(open(engine), { code: 'ERR_SESSION_LIMIT' });

      second.release();
      clock.advance(MINUTE);
      await settle();
      assert.deepEqual(closes.map((e) => [e.sessionId, e.reason]), [[id, 'timeout']]);
    } finally {
      await shutdown(engine, clock);
    }
  });

  test('a session whose spawned task runs is neither evicted nor timed out', GUARD, async () => {
    const clock = new ManualClock();
    const finish = deferred();
    const { engine } = engineWithErrors<Vars>({ clock, maxSessions: 2, inactiveProcessTimeoutMs: MINUTE });
    const { closes } = record(engine);
    try {
      const lease = await open(engine);
      const working = lease.sessionId;
      lease.proc.spawn('report', () => finish.promise);
      lease.release();
      clock.advance(1_000);
      const idle = await visit(engine); // more recently active than `working`
      const newcomer = await visit(engine); // must evict `idle`, the only idle one
      assert.deepEqual(liveIds(engine), [working, newcomer].sort());
      clock.advance(100 * MINUTE);
      await settle();
      assert.deepEqual(closes.map((e) => [e.sessionId, e.reason]).sort(), [[idle, 'evicted'], [newcomer, 'timeout']].sort());
      assert.deepEqual(liveIds(engine), [working]);
    } finally {
      finish.resolve();
      await shutdown(engine, clock);
    }
  });
});

describe('inactivity timeout', () => {
  test("an idle session closes with 'timeout' at its deadline, counted from the end of its last request, with no request arriving", GUARD, async () => {
    const clock = new ManualClock();
    let hooks = 0;
    const { engine } = engineWithErrors<Vars>({ clock, inactiveProcessTimeoutMs: MINUTE, onClose: () => { hooks++; } });
    const { closes } = record(engine);
    try {
      const lease = await open(engine);
      clock.advance(20_000); // a long request: idle time starts when it ends
      lease.release();
      clock.advance(MINUTE - 1);
      await settle();
      assert.equal(closes.length, 0);
      assert.equal(hooks, 0);
      assert.equal(engine.stats().sessions, 1);
      clock.advance(1);
      await settle();
      assert.deepEqual(closes.map((e) => [e.sessionId, e.reason]), [[lease.sessionId, 'timeout']]);
      assert.equal(hooks, 1);
      assert.equal(engine.stats().sessions, 0);
      assert.equal(engine.stats().closed.timeout, 1);
    } finally {
      await shutdown(engine, clock);
    }
  });

  test('each idle session times out on its own deadline, and a request before the deadline restarts the clock', GUARD, async () => {
    const clock = new ManualClock();
    const { engine } = engineWithErrors<Vars>({ clock, inactiveProcessTimeoutMs: MINUTE });
    const { closes } = record(engine);
    try {
      const a = await visit(engine);
      clock.advance(20_000);
      const b = await visit(engine);
      clock.advance(20_000);
      const c = await visit(engine);
      clock.advance(10_000);
      await visit(engine, a); // t=50s: a's clock restarts, its deadline is now t=110s
      clock.advance(10_000); // t=60s
      await settle();
      assert.equal(closes.length, 0);
      clock.advance(20_000); // t=80s: b is due
      await settle();
      assert.deepEqual(closes.map((e) => e.sessionId), [b]);
      clock.advance(20_000); // t=100s: c is due
      await settle();
      assert.deepEqual(closes.map((e) => e.sessionId), [b, c]);
      clock.advance(9_999);
      await settle();
      assert.equal(closes.length, 2);
      clock.advance(1); // t=110s
      await settle();
      assert.deepEqual(closes.map((e) => [e.sessionId, e.reason]), [[b, 'timeout'], [c, 'timeout'], [a, 'timeout']]);
    } finally {
      await shutdown(engine, clock);
    }
  });
  test("a long request's idle time starts when it ends, even when another session's deadline wakes the timer first", GUARD, async () => {
    const clock = new ManualClock();
    const { engine } = engineWithErrors<Vars>({ clock, inactiveProcessTimeoutMs: MINUTE });
    const { closes } = record(engine);
    try {
      const long = await open(engine); // t=0: a long request starts
      const early = await visit(engine); // t=0: idle, due at t=60s (the timer is armed for it)
      clock.advance(10_000);
      const busyAgain = await open(engine, early); // t=10s: early leaves the idle list
      clock.advance(10_000);
      long.release(); // t=20s: idle from now, due at t=80s
      clock.advance(40_000); // t=60s: the timer armed for `early` fires
      await settle();
      assert.equal(closes.length, 0, 'the long request ended 40 s ago: not due');
      clock.advance(20_000); // t=80s
      await settle();
      assert.deepEqual(closes.map((e) => [e.sessionId, e.reason]), [[long.sessionId, 'timeout']]);
      busyAgain.release();
    } finally {
      await shutdown(engine, clock);
    }
  });

  test('a mass expiry closes every due session, in batches, without a request arriving', GUARD, async () => {
    const clock = new ManualClock();
    const count = 1_200;
    const { engine } = engineWithErrors<Vars>({ clock, maxSessions: 2 * count, maxConcurrentProcesses: 2 * count, inactiveProcessTimeoutMs: MINUTE });
    const { closes } = record(engine);
    try {
      for (let i = 0; i < count; i++) await visit(engine);
      clock.advance(MINUTE);
      // Slices end on a CPU-time budget as well as a count, so a slow machine takes more turns: waited
      // for turn by turn (bounded), not by wall time.
      for (let turn = 0; turn < 1_000 && engine.stats().sessions > 0; turn++) await settle(1);
      assert.equal(engine.stats().sessions, 0);
      assert.equal(closes.length, count);
      assert.ok(closes.every((e) => e.reason === 'timeout'));
    } finally {
      await shutdown(engine, clock);
    }
  });
});
