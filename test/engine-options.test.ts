// The engine's options: validation at construction and by setOption, the clamp, lowered values at run time.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  ManualClock,
  SessionEngine,
  type SessionEngineOptions,
} from '../src/index.js';
import { engineWithErrors, settle } from './helpers.js';
import { keepLoopAlive, leaseTracker, record } from './engine-harness.js';

const IP = '192.0.2.10';
const { open, shutdown, visit } = leaseTracker(IP);
const MINUTE = 60_000;
/** Every test is bounded: a hang (a deadlock in the engine) fails that test instead of stalling the run. */
const GUARD = { timeout: 5_000 };

keepLoopAlive();

interface Vars {
  n: number;
  user?: string;
}

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
      // A lock manager missing a method fails only at its first use (unlock, lockedBy), and a touch that is
      // no function at the end of every request: refused here instead.
      { locks: { tryLock: async () => true, releaseAll: async () => 0 } },
      { locks: { tryLock: async () => true, unlock: async () => true, lockedBy: async () => null, releaseAll: async () => 0, touch: 42 } },
      { locks: null },
      // Only an absent store means the memory store: a null one (a config that meant a shared store, read
      // as null) would run every node on sessions of its own.
      { store: null },
      { store: {} },
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
