import { EventEmitter, type errorMonitor } from 'node:events';
import { checkClock, checkedClock, systemClock } from './clock.js';
import { SessionArgumentError, SessionError, SessionOptionError } from './errors.js';
import type { RequestLease } from './lease.js';
import { isLockManager, type LockManager } from './locks.js';
import { memoryStore } from './memory-sessions.js';
import { describe, isOptionName, kOptionsVersion, OPTION_NAMES, resolveOptions, validateCombination, validateOption, type OptionName, type RuntimeOptions } from './options.js';
import type { SessionVars } from './process.js';
import { AsyncContext, type ProcessRun } from './runs.js';
import { emitGuarded, report } from './engine-reports.js';
import { createCounters, type Counters } from './stats.js';
import type { AttachedStore, ReportCounter, RequestIdentity } from './store.js';
import type { EngineStats, SessionEngineEvents, SessionEngineOptions, SessionInfo } from './types.js';

export type { RequestIdentity } from './store.js';

const CONSTRUCTION_KEYS = new Set<string>([...OPTION_NAMES, 'clock', 'locks', 'store', 'init', 'onClose']);

export interface SessionEngine<Vars extends SessionVars> {
  on<E extends keyof SessionEngineEvents>(event: E, listener: SessionEngineEvents[E]): this;
  once<E extends keyof SessionEngineEvents>(event: E, listener: SessionEngineEvents[E]): this;
  off<E extends keyof SessionEngineEvents>(event: E, listener: SessionEngineEvents[E]): this;
  /** `events.errorMonitor`: hears every error report first, before the 'error' listeners. */
  on(event: typeof errorMonitor, listener: SessionEngineEvents['error']): this;
  once(event: typeof errorMonitor, listener: SessionEngineEvents['error']): this;
  off(event: typeof errorMonitor, listener: SessionEngineEvents['error']): this;
  emit<E extends keyof SessionEngineEvents>(event: E, ...args: Parameters<SessionEngineEvents[E]>): boolean;
}

/**
 * 4D legacy web sessions: one live process per browser, kept between requests, one request at a time.
 * Sessions close when the cap needs room (least recently active idle one), after inactivity, on
 * `closeSession(id)` or at `stop()`; `onClose` then runs once per process with the context intact.
 *
 * @example
 * const engine = new SessionEngine<{ user?: string }>({
 *   init: () => ({}),
 *   onClose: (proc, reason) => savePrefs(proc.vars, reason),
 * });
 * createServer(engine, (req, res, proc) => res.end(`hello ${proc.vars.user ?? 'guest'}`)).listen(8080);
 */
export class SessionEngine<Vars extends SessionVars = Record<string, unknown>> extends EventEmitter {
  readonly #options: RuntimeOptions;
  readonly #context = new AsyncContext<Vars>();
  readonly #counters: Counters = createCounters();
  readonly #store: AttachedStore<Vars>;
  #stopping: Promise<void> | undefined;
  /** The runs that called stop() (the first call, and calls again while it ran): the async context is kept until they are over. */
  readonly #stopCallers = new Set<ProcessRun<Vars>>();
  #optionsVersion = 0;

  constructor(options: SessionEngineOptions<Vars> = {}) {
    // The engine emits through engine-reports.ts, which calls each listener on its own (a throw or an
    // async rejection is reported, never passed on nor unhandled). What Node emits itself ('newListener',
    // 'removeListener', the latter also as a `once` listener runs) comes to captureRejectionSymbol below.
    super({ captureRejections: true });
    if (typeof options !== 'object' || options === null) throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', `options must be an object, got ${describe(options)}`);
    for (const key of Object.keys(options)) {
      if (!CONSTRUCTION_KEYS.has(key)) throw new SessionOptionError('ERR_SESSION_UNKNOWN_OPTION', `${describe(key)} (known: ${[...CONSTRUCTION_KEYS].join(', ')})`);
    }
    this.#options = resolveOptions(options);
    const { clock = systemClock, locks, init, onClose } = options;
    checkClock(clock);
    if (init !== undefined && typeof init !== 'function') throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', 'init must be a function');
    if (onClose !== undefined && typeof onClose !== 'function') throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', 'onClose must be a function');
    if (locks !== undefined && !isLockManager(locks)) throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', 'locks must be a LockManager (tryLock, unlock, lockedBy, releaseAll; touch and renameSession, if given, functions; lockTtlMs, if given, an integer from 1)');
    // Only an absent store means the default: null is a bad value, as for `clock` and `locks`.
    const store = options.store === undefined ? memoryStore() : options.store;
    if (typeof store?.attach !== 'function') throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', 'store must be a SessionStore (memoryStore(), createRedisStore())');
    this.#store = store.attach<Vars>({
      options: this.#options,
      clock: clock === systemClock ? clock : checkedClock(clock, (detail, cause) => {
        this.#report(new SessionError('ERR_SESSION_INVALID_OPTION', detail, { cause }), 'handlerErrors');
      }),
      als: this.#context.als,
      counters: this.#counters,
      locks,
      init,
      onClose,
      report: (error, counter) => this.#report(error, counter),
      reportHandlerError: (error, sessionId) => this.reportHandlerError(error, sessionId),
      // Listeners run inside the engine's own work (a request's acquire, a close, an option change): a
      // throw must not stop that work half-way (a new session busy for ever, a close that never ends);
      // it is reported as the application's failure.
      created: (event) => this.#emitGuarded('create', event, event.sessionId),
      closed: (event) => this.#emitGuarded('close', event, event.sessionId),
      applyOption: (name, value) => this.#apply(name, value),
    });
  }

  /**
   * Binds a request to a process: the session named by the cookie if it is live, not expired and from
   * the same IP, else a new session (evicting the least recently active idle one when the cap is
   * reached). Resolves when the process is free (FIFO). Rejects with a `SessionError` whose
   * `httpStatus` is the answer to give: 400 (IP mismatch) or 503 (limits, queue full, stopping).
   * This is the seam adapters use; applications use `createServer` or an adapter instead.
   */
  acquire(request: RequestIdentity): Promise<RequestLease<Vars>> {
    try {
      checkRequest(request);
      return Promise.resolve(this.#store.acquire(request));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * `acquire` without a promise when the answer is known at once: the lease itself when a process is
   * free (or a new session's `init` is synchronous), a `SessionError` thrown when the request is refused
   * at once, and a promise only when the request has to wait (a busy session, an asynchronous `init`, a
   * store that needs a round trip). The built-in adapters use it: most requests then cost no promise.
   */
  acquireNow(request: RequestIdentity): RequestLease<Vars> | Promise<RequestLease<Vars>> {
    checkRequest(request);
    return this.#store.acquire(request);
  }

  // ---- closing ----------------------------------------------------------------------------------------

  /**
   * 4D's WEB LEGACY CLOSE SESSION: closes the session from anywhere. Resolves `true` once the session is
   * closed (hooks run, teardown done), `false` for an unknown id or outside `'legacy'` mode (the mode in
   * effect now: a switch at run time applies to every session, as DESIGN.md's modes say). Called from a
   * request of the session itself (logout), the hook and teardown run at once and the request goes on
   * with a reset context; its response clears the cookie. Called from a hook about a session whose
   * close is under way, resolves `true` at once (hooks awaiting each other's close never wait on each other).
   * An await that would close a cycle of closes (requests of two sessions each awaiting the other's)
   * resolves `true` at once too, so its request ends and the closes follow (close-waits.ts).
   */
  closeSession(id: string): Promise<boolean> {
    if (typeof id !== 'string') return Promise.reject(new SessionArgumentError(`closeSession(id): id must be a string, got ${describe(id)}`));
    if (this.#options.mode !== 'legacy') return Promise.resolve(false);
    const run = this.#context.liveRun();
    return this.#store.closeSession(id, run);
  }

  /**
   * Moves a live session to a fresh random id, context and all (vars, selections, locks, queued
   * requests): the defence against session fixation, to call right after a login. The old id is dead at
   * once (a request still carrying it gets a new session); the current response sends the new cookie.
   * Resolves the new id, or `null` for an unknown or closing session, or once `stop()` was called.
   */
  regenerate(id: string): Promise<string | null> {
    if (typeof id !== 'string') return Promise.reject(new SessionArgumentError(`regenerate(id): id must be a string, got ${describe(id)}`));
    return this.#store.regenerate(id, this.#context.liveRun()?.proc);
  }

  /**
   * Graceful stop: refuses new work (503), lets running requests finish, then closes every session with
   * `'shutdown'` (hooks run in `'legacy'` mode). Idempotent. Called from a request, it does not wait for
   * that request, which goes on knowing its session; the engine's async context is released once that
   * request (task, hook) is over.
   */
  stop(): Promise<void> {
    // Once stopped, the engine's async context is released (AsyncContext.releaseAfter); called from a
    // request, that request goes on after the stop and keeps knowing its session until it is over.
    if (this.#stopping === undefined) {
      this.#store.refuse();
      const run = this.#context.liveRun();
      const caller = run?.proc;
      if (run !== undefined) this.#stopCallers.add(run);
      // The engine's timers are unref'ed, and the stop's bounds (drains, hooks) are among them: held
      // until it ends, so a process with nothing else to do cannot exit half-way through the hooks.
      const holdLoop = setInterval(() => {}, 0x7fffffff);
      // Set before the store's stop begins: a hook it runs at once (an idle session's) may call stop() again.
      let began!: (stopped: Promise<void>) => void;
      this.#stopping = new Promise<void>((resolve) => { began = resolve; });
      began(this.#store.stop(caller).finally(() => {
        clearInterval(holdLoop);
        this.#context.releaseAfter(this.#stopCallers, this.#options.closeTimeoutMs);
      }));
    } else {
      // Called again from a request, task or hook (two requests asking for a stop, a hook calling it
      // during one): the whole stop waits for that very caller, its own session's close included.
      const run = this.#context.liveRun();
      if (run !== undefined) {
        // It goes on after its call knowing its session, as the first caller does.
        this.#stopCallers.add(run);
        return this.#store.joinStop(run);
      }
    }
    return this.#stopping;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  // ---- options --------------------------------------------------------------------------------------

  /** WEB GET OPTION by name. `maxSessions` reads as clamped to `maxConcurrentProcesses`. */
  getOption<K extends OptionName>(name: K): RuntimeOptions[K] {
    if (!isOptionName(name)) validateOption(name, undefined); // throws ERR_SESSION_UNKNOWN_OPTION
    if (name === 'maxSessions') return Math.min(this.#options.maxSessions, this.#options.maxConcurrentProcesses) as RuntimeOptions[K];
    return this.#options[name];
  }

  /**
   * WEB SET OPTION by name, validated (a `TypeError` names the option and the accepted values). Applies
   * at once: a lowered timeout to live sessions, a lowered cap at the next new session (nothing is
   * evicted before a session is needed), a mode change to the next request and close.
   */
  setOption<K extends OptionName>(name: K, value: RuntimeOptions[K]): void {
    const previous = this.#options[name];
    const validated = this.#apply(name, value);
    this.#store.optionChanged(name, validated, previous);
  }

  /** Validates and applies an option, from setOption or from another node of a shared store. */
  #apply(name: OptionName, value: unknown): unknown {
    const validated = validateOption(name, value);
    validateCombination({ ...this.#options, [name]: validated });
    (this.#options as Record<OptionName, unknown>)[name] = validated;
    this.#optionsVersion++;
    this.#emitGuarded('option', { name, value: validated }, undefined);
    return validated;
  }

  // ---- reading --------------------------------------------------------------------------------------

  /** @internal Changes with every option change: the HTTP binding keeps what it reads of the options until then. */
  get [kOptionsVersion](): number {
    return this.#optionsVersion;
  }

  /**
   * WEB Get Current Session ID: the session of the request (or hook, or task) running now, else `''`.
   * A callback that outlived its request (a timer, a promise chain) still names that request's session
   * (its process belongs to it, as a 4D process does); a `closeSession` from there counts as from
   * outside, so it waits for whatever runs the session then.
   */
  currentSessionId(): string {
    return this.#context.currentSessionId();
  }

  /** WEB LEGACY GET SESSION EXPIRATION: when the session's cookie expires; `null` if unknown or not legacy mode. */
  sessionExpiration(id: string): Date | null {
    const expiresAtMs = typeof id === 'string' && this.#options.mode === 'legacy' ? this.#store.expiresAtMs(id) : undefined;
    return expiresAtMs === undefined ? null : new Date(expiresAtMs);
  }

  /** WEB Get session process count: processes of the session (request processes and running tasks); 0 if unknown. */
  sessionProcessCount(id: string): number {
    return typeof id === 'string' ? this.#store.processCount(id) : 0;
  }

  /** Live (open) sessions, in the order they were created or last regenerated (on Redis, those this node has served). */
  sessions(): SessionInfo[] {
    return this.#store.sessions();
  }

  stats(): EngineStats {
    const g = this.#store.gauges();
    const c = this.#counters;
    return {
      sessions: g.sessions, idleSessions: g.idleSessions, busySessions: g.sessions - g.idleSessions, closingSessions: g.closingSessions,
      processes: g.processes, queuedRequests: g.queuedRequests, locksHeld: g.locksHeld, created: c.created, closed: { ...c.closed }, rejected: { ...c.rejected },
      hookErrors: c.hookErrors, hookTimeouts: c.hookTimeouts, drainTimeouts: c.drainTimeouts, handlerErrors: c.handlerErrors, taskErrors: c.taskErrors, storeErrors: c.storeErrors,
    };
  }

  /** The lock manager of this engine's processes. */
  get lockManager(): LockManager {
    return this.#store.lockManager;
  }

  /** @internal A request handler failed (in a lease, or createServer's `sessionless`): 'error' event, `handlerErrors`. */
  reportHandlerError(error: unknown, sessionId: string): void {
    this.#report(new SessionError('ERR_SESSION_HANDLER_FAILED', undefined, { cause: error, sessionId }), 'handlerErrors');
  }

  /** An async listener of an event Node emits itself rejected: reported, never an unhandled rejection. */
  override [EventEmitter.captureRejectionSymbol](error: unknown, event: string | symbol): void {
    this.#report(new SessionError('ERR_SESSION_HANDLER_FAILED', `a '${String(event)}' listener rejected`, { cause: error }), 'handlerErrors');
  }

  /** Emits an event whose listeners' throws are reported (ERR_SESSION_HANDLER_FAILED), never passed on. */
  #emitGuarded<E extends 'create' | 'close' | 'option'>(event: E, payload: Parameters<SessionEngineEvents[E]>[0], sessionId: string | undefined): void {
    emitGuarded(this, this.#counters, event, payload, sessionId);
  }

  #report(error: SessionError, counter: ReportCounter): void {
    report(this, this.#counters, error, counter);
  }
}

/** What a request brings, checked: typed for callers, but an adapter of the application's may pass anything. */
function checkRequest(request: RequestIdentity): void {
  const { sessionId, ip } = (request ?? {}) as { sessionId?: unknown; ip?: unknown };
  if (typeof ip !== 'string' || (sessionId !== undefined && typeof sessionId !== 'string')) {
    throw new SessionArgumentError(`acquire({ sessionId?: string, ip: string }), got sessionId ${describe(sessionId)}, ip ${describe(ip)}`);
  }
}
