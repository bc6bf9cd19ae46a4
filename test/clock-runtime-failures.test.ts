// An application's clock is checked when the engine is made; a now() that later gives no finite number
// (or throws) must not put NaN into last activities, deadlines, cookie dates or Redis: it is reported
// (ERR_SESSION_INVALID_OPTION on 'error', once per run of bad readings, counted in handlerErrors) and read
// as its last good time. A setTimer that throws is reported too, its deadline put on a real timer. Time
// moves by a ManualClock the application's clock reads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type Clock, type CloseEvent, type SessionError } from '../src/index.js';
import { eventually } from './helpers.js';
import { storeChoices } from './store-choices.js';

const IP = '127.0.0.1';
const TIMEOUT_MS = 60_000;
type Vars = Record<string, unknown>;

/** A clock over `manual` whose now() misbehaves while `fault` is set. */
function faultyClock(manual: ManualClock): Clock & { fault: 'nan' | 'throw' | undefined } {
  const clock = {
    fault: undefined as 'nan' | 'throw' | undefined,
    now(): number {
      if (clock.fault === 'throw') throw new Error('clock source down');
      return clock.fault === 'nan' ? Number.NaN : manual.now();
    },
    setTimer: (callback: () => void, delayMs: number) => manual.setTimer(callback, delayMs),
  };
  return clock;
}

for (const [name, choose] of storeChoices()) {
  for (const fault of ['nan', 'throw'] as const) {
    test(`${name}: a now() that ${fault === 'nan' ? 'gives NaN' : 'throws'} while a session goes idle is reported once, and that session and the next time out as usual`, { timeout: 20_000 }, async (t) => {
      const choice = await choose(t);
      if (choice === 'skip') return;
      const manual = new ManualClock();
      const clock = faultyClock(manual);
      const engine = new SessionEngine<Vars>({ clock, inactiveProcessTimeoutMs: TIMEOUT_MS, closeTimeoutMs: 10_000, ...choice.options });
      const errors: SessionError[] = [];
      const closes: CloseEvent[] = [];
      engine.on('error', (error) => errors.push(error));
      engine.on('close', (event) => closes.push(event));
      try {
        const first = await engine.acquire({ sessionId: undefined, ip: IP });
        clock.fault = fault;
        first.release();
        engine.sessionExpiration(first.sessionId); // another bad reading of the same run: not reported again
        clock.fault = undefined;
        const second = await engine.acquire({ sessionId: undefined, ip: IP });
        second.release();
        if (choice.redis !== undefined) {
          const lru = `${choice.redis.prefix}lru`;
          assert.ok(await eventually(async () => (await choice.redis!.redis.zcard(lru)) === 2), 'both releases landed in Redis');
        }
        assert.deepEqual(errors.map((e) => e.code), ['ERR_SESSION_INVALID_OPTION'], errors.map((e) => e.message).join('; '));
        assert.match(errors[0]!.message, fault === 'nan' ? /clock\.now\(\) returned NaN/ : /clock\.now\(\) threw/);
        assert.equal(engine.stats().handlerErrors, 1);
        manual.advance(TIMEOUT_MS + 1_000);
        assert.ok(await eventually(() => closes.length === 2, 3_000), `both sessions timed out: ${JSON.stringify(closes.map((c) => c.reason))}`);
        assert.deepEqual(closes.map((c) => c.reason), ['timeout', 'timeout']);
        assert.equal(errors.length, 1, 'nothing else went wrong (no store error from a NaN in Redis)');
      } finally {
        clock.fault = undefined;
        await engine.stop();
      }
    });
  }
}

test('memory store: requests while now() gives NaN keep their session, and its cookie date stays a date', { timeout: 10_000 }, async () => {
  const manual = new ManualClock();
  const clock = faultyClock(manual);
  const engine = new SessionEngine<Vars>({ clock });
  const errors: SessionError[] = [];
  engine.on('error', (error) => errors.push(error));
  try {
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    lease.release();
    clock.fault = 'nan';
    const again = await engine.acquire({ sessionId: lease.sessionId, ip: IP });
    again.release();
    assert.equal(again.sessionId, lease.sessionId, 'the same session');
    const expires = engine.sessionExpiration(lease.sessionId);
    assert.ok(expires !== null && Number.isFinite(expires.getTime()), `a real date: ${String(expires)}`);
    assert.deepEqual(errors.map((e) => e.code), ['ERR_SESSION_INVALID_OPTION']);
  } finally {
    clock.fault = undefined;
    await engine.stop();
  }
});

for (const [name, choose] of storeChoices()) {
  test(`${name}: a clock whose setTimer throws at run time is reported, nothing is thrown out of the engine, and the idle session still times out`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const manual = new ManualClock();
    let failing = false;
    const clock: Clock = {
      now: () => manual.now(),
      setTimer: (callback, delayMs) => {
        if (failing) throw new Error('timer source down');
        return manual.setTimer(callback, delayMs);
      },
    };
    const engine = new SessionEngine<Vars>({ clock, inactiveProcessTimeoutMs: TIMEOUT_MS, ...choice.options });
    const errors: SessionError[] = [];
    const closes: CloseEvent[] = [];
    engine.on('error', (error) => errors.push(error));
    engine.on('close', (event) => closes.push(event));
    try {
      const lease = await engine.acquire({ sessionId: undefined, ip: IP });
      failing = true;
      assert.doesNotThrow(() => lease.release());
      // The Redis store's sweep arms its next timer after it ran: one sweep with the timer source down.
      manual.advance(1_000);
      assert.ok(await eventually(() => errors.length > 0, 3_000), 'reported');
      assert.deepEqual(errors.map((e) => e.code), ['ERR_SESSION_INVALID_OPTION']);
      assert.match(errors[0]!.message, /clock\.setTimer\(\) threw/);
      failing = false;
      manual.advance(TIMEOUT_MS + 1_000);
      // The deadlines armed while setTimer threw are real timers looking at now() about once a second.
      assert.ok(await eventually(() => closes.length === 1, 5_000), 'the idle session timed out');
    } finally {
      failing = false;
      await engine.stop();
    }
  });
}

test('memory store: a ManualClock subclass whose now() gives NaN at run time is checked as any application clock', { timeout: 10_000 }, async () => {
  class SourceClock extends ManualClock {
    fault = false;
    override now(): number { return this.fault ? Number.NaN : super.now(); }
  }
  const clock = new SourceClock();
  const engine = new SessionEngine<Vars>({ clock, inactiveProcessTimeoutMs: TIMEOUT_MS });
  const errors: SessionError[] = [];
  const closes: CloseEvent[] = [];
  engine.on('error', (error) => errors.push(error));
  engine.on('close', (event) => closes.push(event));
  try {
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    clock.fault = true;
    lease.release();
    clock.fault = false;
    clock.advance(TIMEOUT_MS + 1_000);
    assert.ok(await eventually(() => closes.length === 1, 2_000), 'the session timed out');
    assert.deepEqual(errors.map((e) => e.code), ['ERR_SESSION_INVALID_OPTION']);
  } finally {
    clock.fault = false;
    await engine.stop();
  }
});

for (const [name, choose] of storeChoices()) {
  test(`${name}: a clock whose timer handles' cancel() throws at run time is reported once, nothing escapes the engine, closes go on`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const manual = new ManualClock();
    let failing = false;
    let failedCancels = 0;
    const clock: Clock = {
      now: () => manual.now(),
      setTimer: (callback, delayMs) => {
        const handle = manual.setTimer(callback, delayMs);
        return { cancel: () => { if (failing) { failedCancels++; throw new Error('timer source down'); } handle.cancel(); } };
      },
    };
    const escaped: unknown[] = [];
    const onEscape = (error: unknown): void => { escaped.push(error); };
    process.on('unhandledRejection', onEscape);
    const engine = new SessionEngine<Vars>({ clock, ...choice.options });
    const errors: SessionError[] = [];
    engine.on('error', (error) => errors.push(error));
    try {
      const lease = await engine.acquire({ sessionId: undefined, ip: IP });
      failing = true;
      assert.doesNotThrow(() => lease.release());
      const again = await engine.acquire({ sessionId: lease.sessionId, ip: IP });
      again.release();
      assert.equal(await engine.closeSession(lease.sessionId), true);
      // The memory store's one expiry timer may never be cancelled on this path; Redis's drain and hook bounds are.
      if (choice.redis !== undefined) assert.ok(failedCancels > 0, 'a cancel failed');
      assert.ok(await eventually(() => errors.length === (failedCancels > 0 ? 1 : 0), 2_000), `reported once: ${errors.length} for ${failedCancels}`);
      for (const error of errors) assert.match(error.message, /cancel\(\) threw/);
    } finally {
      failing = false;
      await engine.stop();
      process.off('unhandledRejection', onEscape);
    }
    assert.deepEqual(escaped, [], 'nothing escaped (an unhandled rejection ends a Node process)');
  });
}
