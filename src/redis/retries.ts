import { realTimer } from '../clock.js';

/**
 * Waits between retries of writes that must land (a save, a close) while Redis is away: growing delays
 * up to 5 s, in real time (an outage is not session time); `stop()` ends every wait at once and makes
 * `stopped` true, so a stopping node gives up instead of waiting for Redis forever.
 */
export class Retries {
  readonly #baseMs: number;
  readonly #waking = new Set<() => void>();
  #stopped = false;
  /** The node has closed its own command connection (its stop ended): a command failing now says nothing of Redis. */
  ownConnectionsClosed = false;

  constructor(baseMs: number) {
    this.#baseMs = baseMs;
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  /** Resolves after the delay of attempt `attempt` (0-based), or at once when stopped. */
  wait(attempt: number): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const wake = (): void => {
        this.#waking.delete(wake);
        timer.cancel();
        resolve();
      };
      const timer = realTimer(wake, Math.min(5_000, this.#baseMs * 2 ** Math.min(attempt, 10)));
      this.#waking.add(wake);
    });
  }

  stop(): void {
    this.#stopped = true;
    for (const wake of [...this.#waking]) wake();
  }
}
