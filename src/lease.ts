import type { AsyncLocalStorage } from 'node:async_hooks';
import type { SessionVars, WebProcess } from './process.js';
import type { ProcessRun } from './runs.js';
import type { SessionState } from './session.js';
import { timerOn, type TimerHandle } from './clock.js';
import { SessionArgumentError, SessionError } from './errors.js';
import type { StoreContext } from './store.js';

/** What a response's session cookie must say, decided when its headers are written. */
export type CookieDirective =
  | { readonly action: 'set'; readonly sessionId: string; readonly expiresAtMs: number }
  | { readonly action: 'clear' }
  | { readonly action: 'none' };

/** What a lease reads of its session, whichever store holds it. */
export interface LeaseSession {
  readonly id: string;
  readonly state: SessionState;
}

/** Store operations a lease calls back into. */
export interface LeaseHost<Vars extends SessionVars, S extends LeaseSession = LeaseSession> {
  readonly als: AsyncLocalStorage<ProcessRun<Vars>>;
  release(lease: RequestLease<Vars, S>): void;
  reportHandlerError(error: unknown, sessionId: string): void;
  cookieExpiresAtMs(session: S): number;
  /** Calls `callback` once `closeTimeoutMs` has passed on the engine's clock (see `releaseAtTheLatest`). */
  releaseDeadline(callback: () => void): TimerHandle;
  /** The engine's clock. */
  nowMs(): number;
  /**
   * `releaseAtTheLatest`'s or `holdAndReportAtTheLatest`'s deadline passed: said on the engine's 'error'
   * event (ERR_SESSION_DRAIN_TIMEOUT), with what became of the process.
   */
  reportHeldTooLong(sessionId: string, process: 'released' | 'held'): void;
}

const NO_COOKIE: CookieDirective = Object.freeze({ action: 'none' });
const CLEAR_COOKIE: CookieDirective = Object.freeze({ action: 'clear' });

/**
 * One request's hold on a process, from `engine.acquire()` to `release()`. This is the seam every HTTP
 * adapter uses: run the handler in `run()`, write `cookie()` into the response headers, `release()` once
 * both the handler and the response are done. Release is idempotent.
 */
export class RequestLease<Vars extends SessionVars = Record<string, unknown>, S extends LeaseSession = LeaseSession> {
  readonly proc: WebProcess<Vars>;
  /** The session was created for this request (its cookie is new to the client). */
  readonly isNewSession: boolean;
  /** @internal undefined in `'none'` mode (a throw-away process). */
  readonly session: S | undefined;
  #host: LeaseHost<Vars, S>;
  #released = false;
  #deadline: TimerHandle | undefined;

  constructor(host: LeaseHost<Vars, S>, session: S | undefined, proc: WebProcess<Vars>, isNewSession: boolean) {
    this.#host = host;
    this.session = session;
    this.proc = proc;
    this.isNewSession = isNewSession;
  }

  /** `''` in `'none'` mode. */
  get sessionId(): string {
    return this.session === undefined ? '' : this.session.id;
  }

  get released(): boolean {
    return this.#released;
  }

  /** The cookie to send now: the session's id with a fresh expiry, a clearing cookie if it closed meanwhile, or none. */
  cookie(): CookieDirective {
    const session = this.session;
    if (session === undefined) return NO_COOKIE;
    if (session.state !== 'open') return CLEAR_COOKIE;
    return { action: 'set', sessionId: session.id, expiresAtMs: this.#host.cookieExpiresAtMs(session) };
  }

  /** The engine's clock now (what the response's time is, for the cookie rules that need it). */
  nowMs(): number {
    return this.#host.nowMs();
  }

  /** Runs `fn` with this request's process as the current one (`engine.currentSessionId()`). */
  run<T>(fn: () => T): T {
    if (typeof fn !== 'function') throw new SessionArgumentError(`lease.run(fn: function), got ${fn === null ? 'null' : typeof fn}`);
    return this.#host.als.run(this, fn);
  }

  /** Reports a handler failure on the engine's `'error'` event (the adapter answers a generic 500). */
  fail(error: unknown): void {
    this.#host.reportHandlerError(error, this.sessionId);
  }

  /** Gives the process back: the next queued request of the session runs, or the session becomes idle. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#deadline?.cancel();
    this.#host.release(this);
  }

  /**
   * @internal The response is over (the client left, or it was cut) while the application may still be
   * using the process: its handler has not settled, or cannot be seen and has not ended the response.
   * The release waits for that, at most `closeTimeoutMs`; then it happens anyway and is reported, so an
   * application that never ends a response its client left cannot hold its session for ever.
   */
  releaseAtTheLatest(stillRunning?: () => boolean): void {
    if (this.#released || this.#deadline !== undefined) return;
    this.#deadline = this.#host.releaseDeadline(() => {
      if (this.#released) return;
      // A handler the adapter sees settle, running by now (it started after the deadline was armed:
      // its client left while it waited for the process): it keeps the process until it settles.
      if (stillRunning?.() === true) {
        this.#deadline = undefined;
        this.#host.reportHeldTooLong(this.sessionId, 'held');
        return;
      }
      this.#host.reportHeldTooLong(this.sessionId, 'released');
      this.release();
    });
  }

  /**
   * @internal The response is over (the client left, or it was cut) while its handler, which the adapter
   * sees settle, still runs: the process stays with it until it settles, however long, since requests of
   * one process never overlap (the session's next requests wait, then get 503 at queueTimeoutMs). A
   * handler still running `closeTimeoutMs` later is reported once, so a stuck one does not go unseen.
   */
  holdAndReportAtTheLatest(): void {
    if (this.#released || this.#deadline !== undefined) return;
    this.#deadline = this.#host.releaseDeadline(() => {
      if (!this.#released) this.#host.reportHeldTooLong(this.sessionId, 'held');
    });
  }
}

/** The deadline part of a store's LeaseHost: `closeTimeoutMs` on the engine's clock, reported as a drain timeout. */
export function releaseDeadlines<Vars extends SessionVars>(ctx: Pick<StoreContext<Vars>, 'clock' | 'options' | 'report'>): Pick<LeaseHost<Vars>, 'releaseDeadline' | 'reportHeldTooLong' | 'nowMs'> {
  return {
    releaseDeadline: (callback) => timerOn(ctx.clock, callback, ctx.options.closeTimeoutMs),
    nowMs: () => ctx.clock.now(),
    reportHeldTooLong: (sessionId, process) => ctx.report(new SessionError(
      'ERR_SESSION_DRAIN_TIMEOUT',
      process === 'released'
        ? `a request's response was over (its client left, or it was cut) and its handler had not ended it after ${ctx.options.closeTimeoutMs} ms: its process is released`
        : `a request's response was over (its client left, or it was cut) and its handler was still running after ${ctx.options.closeTimeoutMs} ms: its process stays held until it settles`,
      { sessionId },
    ), 'drainTimeouts'),
  };
}
