import { timerOn, type Clock, type TimerHandle } from './clock.js';
import type { MemoryStore } from './memory-store.js';
import type { SessionVars } from './process.js';
import type { Session } from './session.js';

/**
 * When many sessions time out together they are closed in slices, and the event loop serves requests
 * between slices: at most this many closes, and no more than EXPIRY_SLICE_MS of closing, per turn.
 */
const EXPIRY_BATCH = 512;
/** Real time (not the engine's clock, which a test may hold still): this is about event-loop delay. */
const EXPIRY_SLICE_MS = 2;
/** The slice's time is read once per this many closes (a clock read costs more than some closes). */
const EXPIRY_TIME_CHECK_EVERY = 16;

/**
 * One timer for every inactivity deadline. It is armed on the earliest deadline only; when that session
 * leaves the idle list the timer may fire early, finds nothing due and re-arms. Nothing scans sessions on
 * a request. Timers are unref'ed: an engine never keeps Node alive.
 */
export class ExpiryTimer {
  readonly #clock: Clock;
  readonly #onDue: () => void;
  #handle: TimerHandle | undefined;
  #armedForMs = Number.POSITIVE_INFINITY;

  constructor(clock: Clock, onDue: () => void) {
    this.#clock = clock;
    this.#onDue = onDue;
  }

  /** Makes sure the timer fires no later than `deadlineMs`. */
  ensureBy(deadlineMs: number): void {
    if (this.#handle !== undefined && this.#armedForMs <= deadlineMs) return;
    this.cancel();
    this.#armedForMs = deadlineMs;
    this.#handle = timerOn(this.#clock, () => {
      this.#handle = undefined;
      this.#armedForMs = Number.POSITIVE_INFINITY;
      this.#onDue();
    }, deadlineMs - this.#clock.now());
  }

  cancel(): void {
    this.#handle?.cancel();
    this.#handle = undefined;
    this.#armedForMs = Number.POSITIVE_INFINITY;
  }
}

/**
 * Closes idle sessions of a memory store at their inactivity deadline. The store's idle list is in
 * order of last activity and every idle session has the same timeout, so the head holds the earliest
 * deadline: one timer armed on it, and a due run closes from the head until the first not yet due.
 */
export class IdleExpiry<Vars extends SessionVars> {
  readonly #timer: ExpiryTimer;
  readonly #clock: Clock;
  readonly #store: MemoryStore<Vars>;
  readonly #timeoutMs: () => number;
  readonly #close: (session: Session<Vars>) => void;
  #stopped = false;

  constructor(clock: Clock, store: MemoryStore<Vars>, timeoutMs: () => number, close: (session: Session<Vars>) => void) {
    this.#clock = clock;
    this.#store = store;
    this.#timeoutMs = timeoutMs;
    this.#close = close;
    this.#timer = new ExpiryTimer(clock, () => this.#expireDue());
  }

  /** Makes sure the timer fires by the earliest idle deadline (call when a session becomes idle). */
  schedule(): void {
    const head = this.#store.oldestIdle();
    if (head === undefined || this.#stopped) return;
    this.#timer.ensureBy(head.lastActivityAtMs + this.#timeoutMs());
  }

  /** The timeout changed: re-arm on the new earliest deadline (which may be due now). */
  reschedule(): void {
    this.#timer.cancel();
    this.schedule();
  }

  /** No more expiry (the engine is stopping and closes every session itself). */
  stop(): void {
    this.#stopped = true;
    this.#timer.cancel();
  }

  #expireDue(): void {
    const nowMs = this.#clock.now();
    const timeoutMs = this.#timeoutMs();
    const sliceStartMs = performance.now();
    let closed = 0;
    for (let head = this.#store.oldestIdle(); head !== undefined && head.lastActivityAtMs + timeoutMs <= nowMs; head = this.#store.oldestIdle()) {
      this.#close(head);
      closed++;
      if (closed === EXPIRY_BATCH || (closed % EXPIRY_TIME_CHECK_EVERY === 0 && performance.now() - sliceStartMs >= EXPIRY_SLICE_MS)) {
        // Mass expiry: yield to pending requests between slices.
        setImmediate(() => this.#expireDue()).unref();
        return;
      }
    }
    this.schedule();
  }
}
