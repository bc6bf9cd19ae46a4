import { AsyncLocalStorage } from 'node:async_hooks';
import { EventEmitter } from 'node:events';
import { systemClock, type Clock } from './clock.js';
import { beginClose } from './close.js';
import { SessionError, SessionOptionError } from './errors.js';
import type { RequestLease } from './lease.js';
import { MemoryLockManager, type LockManager } from './locks.js';
import { describe, isOptionName, OPTION_NAMES, resolveOptions, validateCombination, validateOption, type OptionName, type RuntimeOptions } from './options.js';
import type { SessionVars, WebProcess } from './process.js';
import { Scheduler } from './scheduler.js';
import type { Session } from './session.js';
import { createCounters, type Counters } from './stats.js';
import type { EngineStats, SessionEngineEvents, SessionEngineOptions, SessionInfo } from './types.js';

const CONSTRUCTION_KEYS = new Set<string>([...OPTION_NAMES, 'clock', 'locks', 'init', 'onClose']);

/** Where a request comes from, as the HTTP binding read it. */
export interface RequestIdentity {
  /** The session id the client's cookie carries, if any (never adopted: an unknown id gets a new session). */
  readonly sessionId: string | undefined;
  readonly ip: string;
}

export interface SessionEngine<Vars extends SessionVars> {
  on<E extends keyof SessionEngineEvents>(event: E, listener: SessionEngineEvents[E]): this;
  once<E extends keyof SessionEngineEvents>(event: E, listener: SessionEngineEvents[E]): this;
  off<E extends keyof SessionEngineEvents>(event: E, listener: SessionEngineEvents[E]): this;
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
  readonly #clock: Clock;
  readonly #lockManager: LockManager;
  readonly #als = new AsyncLocalStorage<WebProcess<Vars>>();
  readonly #counters: Counters = createCounters();
  readonly #scheduler: Scheduler<Vars>;
  #stopping: Promise<void> | undefined;

  constructor(options: SessionEngineOptions<Vars> = {}) {
    super();
    for (const key of Object.keys(options)) {
      if (!CONSTRUCTION_KEYS.has(key)) throw new SessionOptionError('ERR_SESSION_UNKNOWN_OPTION', `${describe(key)} (known: ${[...CONSTRUCTION_KEYS].join(', ')})`);
    }
    this.#options = resolveOptions(options);
    const { clock = systemClock, locks, init, onClose } = options;
    if (typeof clock?.now !== 'function') throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', 'clock must have a now() method');
    if (init !== undefined && typeof init !== 'function') throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', 'init must be a function');
    if (onClose !== undefined && typeof onClose !== 'function') throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', 'onClose must be a function');
    this.#clock = clock;
    this.#lockManager = locks ?? new MemoryLockManager(() => clock.now());
    this.#scheduler = new Scheduler<Vars>({
      options: this.#options,
      clock,
      lockManager: this.#lockManager,
      als: this.#als,
      counters: this.#counters,
      init,
      onClose,
      report: (error, counter) => this.#report(error, counter),
      created: (event) => this.emit('create', event),
      closed: (event) => this.emit('close', event),
    });
  }

  /**
   * Binds a request to a process: the session named by the cookie if it is live, not expired and from
   * the same IP, else a new session (evicting the least recently active idle one when the cap is
   * reached). Resolves when the process is free (FIFO). Rejects with a `SessionError` whose
   * `httpStatus` is the answer to give: 400 (IP mismatch) or 503 (limits, queue full, stopping).
   * This is the seam adapters use; applications use `createServer` or an adapter instead.
   */
  async acquire(request: RequestIdentity): Promise<RequestLease<Vars>> {
    const scheduler = this.#scheduler;
    let session = scheduler.findLive(request.sessionId);
    let closedWhileQueued: Session<Vars> | undefined;
    for (;;) {
      if (this.#stopping !== undefined) throw scheduler.reject('stopped', new SessionError('ERR_SESSION_STOPPED'));
      const { mode } = this.#options;
      if (mode === 'none') return scheduler.transient();
      if (session === undefined) {
        const predecessor = closedWhileQueued;
        return scheduler.create(request.ip, predecessor === undefined ? undefined : (created) => { predecessor.successor = created; });
      }
      if (mode === 'legacy' && this.#options.ipValidation && session.ip !== request.ip) {
        throw scheduler.reject('ipMismatch', new SessionError('ERR_SESSION_IP_MISMATCH', undefined, { sessionId: session.id }));
      }
      try {
        return await scheduler.enter(session);
      } catch (error) {
        if (!(error instanceof SessionError && error.code === 'ERR_SESSION_CLOSED')) throw error;
        // The session closed while this request waited in its queue. It runs in a new session instead;
        // the other requests queued with the same cookie join that one rather than each making its own.
        closedWhileQueued = session;
        const successor = session.successor;
        session = successor !== undefined && successor.state === 'open' ? successor : undefined;
      }
    }
  }

  // ---- closing ----------------------------------------------------------------------------------------

  /**
   * 4D's WEB LEGACY CLOSE SESSION: closes the session from anywhere. Resolves `true` once the session is
   * closed (hooks run, teardown done), `false` for an unknown id or outside `'legacy'` mode. Called from a
   * request of the session itself (logout), the hook and teardown run at once and the request goes on
   * with a reset context; its response clears the cookie.
   */
  closeSession(id: string): Promise<boolean> {
    if (typeof id !== 'string') return Promise.reject(new TypeError(`closeSession(id): id must be a string, got ${describe(id)}`));
    if (this.#options.mode !== 'legacy') return Promise.resolve(false);
    const session = this.#scheduler.store.get(id) ?? this.#scheduler.closing.get(id);
    if (session === undefined) return Promise.resolve(false);
    const caller = this.#als.getStore();
    const fromOwnSession = caller !== undefined && caller.sessionId === session.id;
    // From the session's own hook or teardown: it is closing already, and waiting on itself would deadlock.
    if (fromOwnSession && session.phase !== undefined && session.phase !== 'draining') return Promise.resolve(true);
    const closed = beginClose(this.#scheduler.closeContext, session, 'closed');
    if (fromOwnSession) this.#scheduler.waitInside(caller);
    return closed.then(() => true);
  }

  /**
   * Moves a live session to a fresh random id, context and all (vars, selections, locks, queued
   * requests): the defence against session fixation, to call right after a login. The old id is dead at
   * once (a request still carrying it gets a new session); the current response sends the new cookie.
   * Resolves the new id, or `null` for an unknown or closing session.
   */
  regenerate(id: string): Promise<string | null> {
    if (typeof id !== 'string') return Promise.reject(new TypeError(`regenerate(id): id must be a string, got ${describe(id)}`));
    const session = this.#scheduler.store.get(id);
    return Promise.resolve(session === undefined ? null : this.#scheduler.regenerate(session));
  }

  /**
   * Graceful stop: refuses new work (503), lets running requests finish, then closes every session with
   * `'shutdown'` (hooks run in `'legacy'` mode). Idempotent. Called from a request, it does not wait for
   * that request.
   */
  stop(): Promise<void> {
    // Once stopped, the engine's async context is released: Node keeps every enabled AsyncLocalStorage
    // in one list that each new promise walks, so engines created and stopped by the thousand (tests,
    // per-tenant engines) would otherwise slow every promise of the process.
    this.#stopping ??= this.#scheduler.closeAll(this.#als.getStore()).then(() => this.#als.disable());
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
    const validated = validateOption(name, value);
    validateCombination({ ...this.#options, [name]: validated });
    this.#options[name] = validated;
    if (name === 'inactiveProcessTimeoutMs') this.#scheduler.rescheduleExpiry();
    this.emit('option', { name, value: validated });
  }

  // ---- reading --------------------------------------------------------------------------------------

  /** WEB Get Current Session ID: the session of the request (or hook, or task) running now, else `''`. */
  currentSessionId(): string {
    return this.#als.getStore()?.sessionId ?? '';
  }

  /** WEB LEGACY GET SESSION EXPIRATION: when the session's cookie expires; `null` if unknown or not legacy mode. */
  sessionExpiration(id: string): Date | null {
    const session = typeof id === 'string' ? this.#scheduler.store.get(id) : undefined;
    if (session === undefined || this.#options.mode !== 'legacy') return null;
    return new Date(this.#scheduler.cookieExpiresAtMs(session));
  }

  /** WEB Get session process count: processes of the session (request processes and running tasks); 0 if unknown. */
  sessionProcessCount(id: string): number {
    return (typeof id === 'string' ? this.#scheduler.store.get(id)?.processes.length : undefined) ?? 0;
  }

  /** Live (open) sessions, least recently created first. */
  sessions(): SessionInfo[] {
    return [...this.#scheduler.store.values()].map((s) => ({
      id: s.id,
      ip: s.ip,
      createdAt: new Date(s.createdAtMs),
      lastActivityAt: new Date(s.lastActivityAtMs),
      expiresAt: new Date(this.#scheduler.cookieExpiresAtMs(s)),
      processCount: s.processes.length,
      busy: !s.isIdle,
      queuedRequests: s.queuedCount,
      locks: s.processes.flatMap((p) => p.locks.held()),
    }));
  }

  stats(): EngineStats {
    let queuedRequests = 0;
    let locksHeld = 0;
    for (const s of this.#scheduler.store.values()) {
      queuedRequests += s.queuedCount;
      for (const proc of s.processes) locksHeld += proc.lockCount;
    }
    const sessions = this.#scheduler.store.size;
    const idleSessions = this.#scheduler.store.idleCount;
    const c = this.#counters;
    return {
      sessions, idleSessions, busySessions: sessions - idleSessions, closingSessions: this.#scheduler.closing.size,
      processes: this.#scheduler.liveProcesses, queuedRequests, locksHeld, created: c.created, closed: { ...c.closed }, rejected: { ...c.rejected },
      hookErrors: c.hookErrors, hookTimeouts: c.hookTimeouts, drainTimeouts: c.drainTimeouts, handlerErrors: c.handlerErrors, taskErrors: c.taskErrors,
    };
  }

  /** The lock manager of this engine's processes. */
  get lockManager(): LockManager {
    return this.#lockManager;
  }

  #report(error: SessionError, counter: 'hookErrors' | 'hookTimeouts' | 'drainTimeouts' | 'handlerErrors' | 'taskErrors'): void {
    this.#counters[counter]++;
    // An 'error' event without a listener would throw and crash the server: warn instead.
    if (this.listenerCount('error') > 0) this.emit('error', error);
    else process.emitWarning(error);
  }
}
