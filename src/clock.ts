import { SessionArgumentError, SessionOptionError } from './errors.js';
import { describe } from './options.js';

/** A scheduled callback that can be cancelled. */
export interface TimerHandle {
  cancel(): void;
}

/**
 * Every time decision of the engine goes through a clock, so tests move time instead of sleeping.
 * `now()` is milliseconds since the epoch. `setTimer` is optional: without it the engine's timers are
 * real, unref'ed ones that look at `now()` at least once a second, so deadlines (timeouts, hook and
 * queue limits) follow a clock that only has `now()` too, at most a second late; the hook, drain and
 * queue limits also come at the latest when as much real time has passed (inactivity timeouts are
 * session time: they follow the clock alone).
 */
export interface Clock {
  now(): number;
  setTimer?(callback: () => void, delayMs: number): TimerHandle;
}

/** The longest delay setTimeout holds. */
const MAX_TIMER_MS = 0x7fffffff;

/** Schedules on the real event loop; timers never keep the process alive. */
export function realTimer(callback: () => void, delayMs: number): TimerHandle {
  // setTimeout clamps above 2^31-1 ms (24.8 days) to 1 ms, and options take up to 366 days: a longer
  // delay goes in steps, so a queue, drain or hook bound fires when it was set to, not at 24.8 days.
  let leftMs = Math.max(0, delayMs);
  let timer: ReturnType<typeof setTimeout>;
  const arm = (): void => {
    const stepMs = Math.min(leftMs, MAX_TIMER_MS);
    leftMs -= stepMs;
    timer = setTimeout(leftMs > 0 ? arm : callback, stepMs);
    timer.unref();
  };
  arm();
  return { cancel: () => clearTimeout(timer) };
}

/** How often a timer on a clock without `setTimer` looks at the clock: the most such a deadline is late. */
const CLOCK_POLL_MS = 1_000;

/**
 * A timer on `clock`: its own when it has them (a test's ManualClock), else a real, unref'ed one due
 * when `clock.now()` reaches the deadline (a clock moved faster than real time), or when as much real
 * time has passed (a clock that stands still or is set back must not lift every bound: a stop would
 * never end).
 */
export function timerOn(clock: Clock, callback: () => void, delayMs: number): TimerHandle {
  if (clock.setTimer !== undefined) return clock.setTimer(callback, delayMs);
  const waitMs = Math.max(0, delayMs);
  const dueAtMs = clock.now() + waitMs;
  const realDueAtMs = performance.now() + waitMs;
  let timer: TimerHandle;
  const check = (): void => {
    const leftMs = Math.min(dueAtMs - clock.now(), realDueAtMs - performance.now());
    if (leftMs <= 0) callback();
    else timer = realTimer(check, Math.min(leftMs, CLOCK_POLL_MS));
  };
  timer = realTimer(check, Math.min(Math.max(0, delayMs), CLOCK_POLL_MS));
  return { cancel: () => timer.cancel() };
}

/**
 * When a wait that may go on in several steps ends (a queued request moved to another session): on the
 * clock, and in real time for a clock without timers of its own, as timerOn bounds a single wait.
 */
export interface WaitDeadline {
  readonly clockMs: number;
  readonly realMs: number;
}

export function waitDeadline(clock: Clock, timeoutMs: number): WaitDeadline {
  return { clockMs: clock.now() + timeoutMs, realMs: performance.now() + timeoutMs };
}

/** What is left of a wait until `deadline` (0 or less: past it). */
export function msLeft(clock: Clock, deadline: WaitDeadline): number {
  return Math.min(deadline.clockMs - clock.now(), clock.setTimer === undefined ? deadline.realMs - performance.now() : Number.POSITIVE_INFINITY);
}

// Frozen, as DEFAULT_OPTIONS and ERROR_CODES are: it is the clock of every engine made without one, so a
// write into it (a test stubbing now) would move them all.
/** The default clock: wall time and real, unref'ed timers. */
export const systemClock: Readonly<Clock> = Object.freeze({ now: () => Date.now(), setTimer: realTimer });

interface ManualTimer {
  readonly dueAtMs: number;
  readonly order: number;
  /** Dropped when the timer is cancelled or fires: a cancelled timer must not keep what its callback holds. */
  callback: (() => void) | undefined;
}

/**
 * A clock that moves only when told to. Timers fire inside `advance()`, in due order, so a test can
 * say "eight hours pass" and then await the consequences.
 *
 * @example
 * const clock = new ManualClock();
 * const engine = new SessionEngine({ clock, inactiveProcessTimeoutMs: 60_000 });
 * clock.advance(60_000); // due session timeouts fire now
 */
export class ManualClock implements Clock {
  #nowMs: number;
  #timers: ManualTimer[] = [];
  #order = 0;

  constructor(startMs = Date.UTC(2026, 0, 1)) {
    if (!Number.isFinite(startMs)) throw new SessionArgumentError(`new ManualClock(startMs): a finite number of ms, got ${describe(startMs)}`);
    this.#nowMs = startMs;
  }

  now(): number {
    return this.#nowMs;
  }

  setTimer(callback: () => void, delayMs: number): TimerHandle {
    const timer: ManualTimer = { dueAtMs: this.#nowMs + Math.max(0, delayMs), order: this.#order++, callback };
    this.#timers.push(timer);
    return { cancel: () => { timer.callback = undefined; } };
  }

  /** Moves time forward by `ms`, firing every timer that falls due, each at its own time. Returns how many fired. */
  advance(ms: number): number {
    // A negative step sets the clock back (as a system clock can be): no timer fires.
    if (!Number.isFinite(ms)) throw new SessionArgumentError(`advance(ms): a finite number of ms, got ${describe(ms)}`);
    const targetMs = this.#nowMs + ms;
    let fired = 0;
    for (;;) {
      this.#timers = this.#timers.filter((t) => t.callback !== undefined);
      let next: ManualTimer | undefined;
      for (const t of this.#timers) {
        if (t.dueAtMs <= targetMs && (next === undefined || t.dueAtMs < next.dueAtMs || (t.dueAtMs === next.dueAtMs && t.order < next.order))) next = t;
      }
      if (next === undefined) break;
      const callback = next.callback!;
      next.callback = undefined;
      this.#nowMs = Math.max(this.#nowMs, next.dueAtMs);
      callback();
      fired++;
    }
    this.#nowMs = targetMs;
    return fired;
  }

  /** Timers still waiting (for tests that check nothing is left armed). */
  get pendingTimers(): number {
    return this.#timers.filter((t) => t.callback !== undefined).length;
  }
}

/**
 * Refuses a clock the engine could not run on, at construction: a missing `now()`, a `setTimer` that is
 * not a function (it would throw at the first timer, outside any request), or a `now()` that does not
 * give a finite number of milliseconds (every deadline and cookie date would be NaN).
 */
export function checkClock(clock: unknown): asserts clock is Clock {
  const { now, setTimer } = (clock ?? {}) as Partial<Clock>;
  if (typeof now !== 'function') throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', 'clock must have a now() method');
  if (setTimer !== undefined && typeof setTimer !== 'function') throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', 'clock.setTimer must be a function when given');
  const nowMs: unknown = (clock as Clock).now();
  if (typeof nowMs !== 'number' || !Number.isFinite(nowMs)) throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', `clock.now() must return a finite number of milliseconds since the epoch, got ${describe(nowMs)}`);
}

/**
 * An application's clock as the engine reads it. checkClock looks at one reading only: a now() that
 * later gives no finite number (or throws) would put NaN into deadlines, cookie dates and stored
 * times, for good. Such a reading is reported (once per run of bad readings) and read as the last good
 * one; timers on a clock without setTimer still come when as much real time has passed. A setTimer
 * that throws is reported the same way, its timer put on real time.
 */
export function checkedClock(clock: Clock, report: (detail: string, cause: unknown) => void): Clock {
  const firstMs = clock.now();
  let lastGoodMs = Number.isFinite(firstMs) ? firstMs : Date.now();
  let failing = false;
  const now = (): number => {
    let ms: unknown;
    let cause: unknown;
    try {
      ms = clock.now();
    } catch (error) {
      cause = error;
    }
    if (typeof ms === 'number' && Number.isFinite(ms)) {
      lastGoodMs = ms;
      failing = false;
      return ms;
    }
    if (!failing) {
      failing = true;
      report(`clock.now() ${cause === undefined ? `returned ${describe(ms)}` : 'threw'}: the engine reads its last good time (${lastGoodMs}) until it gives a finite number again`, cause);
    }
    return lastGoodMs;
  };
  if (clock.setTimer === undefined) return { now };
  const setTimer = clock.setTimer.bind(clock);
  let timerFailing = false;
  let cancelFailing = false;
  // A cancel() that throws is reported; the timer may still fire, which every deadline of the engine
  // tolerates (a fired deadline looks at what it guards).
  const cancelOf = (timer: TimerHandle) => (): void => {
    try {
      timer.cancel();
      cancelFailing = false;
    } catch (error) {
      if (!cancelFailing) report("clock: a timer's cancel() threw", error);
      cancelFailing = true;
    }
  };
  return {
    now,
    // A setTimer that throws: the deadline goes on a real timer looking at now() (as for a clock without
    // setTimer), so no timeout, hook or drain bound is lost, and the caller (a release, a sweep) goes on.
    setTimer: (callback, delayMs) => {
      try {
        const timer = setTimer(callback, delayMs);
        timerFailing = false;
        return { cancel: cancelOf(timer) };
      } catch (error) {
        if (!timerFailing) {
          timerFailing = true;
          report('clock.setTimer() threw: the engine times its deadlines on real timers meanwhile', error);
        }
        return timerOn({ now }, callback, delayMs);
      }
    },
  };
}
