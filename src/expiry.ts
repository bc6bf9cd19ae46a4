import { realTimer, type Clock, type TimerHandle } from './clock.js';

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
    const schedule = this.#clock.setTimer?.bind(this.#clock) ?? realTimer;
    this.#handle = schedule(() => {
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
