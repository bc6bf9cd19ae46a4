import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { systemClock, type Clock } from './clock.js';
import { beginClose, noteProgress, type CloseContext } from './close.js';
import { SessionError, SessionOptionError } from './errors.js';
import { ExpiryTimer } from './expiry.js';
import { RequestLease, type LeaseHost } from './lease.js';
import { MemoryLockManager, type LockManager } from './locks.js';
import { MemoryStore } from './memory-store.js';
import { describe, isOptionName, OPTION_NAMES, resolveOptions, validateCombination, validateOption, type OptionName, type RuntimeOptions } from './options.js';
import { processInternals, WebProcess, type SessionVars } from './process.js';
import { removeItem, Session, type CloseReason, type SessionHost } from './session.js';
import { createCounters, type Counters } from './stats.js';
import type { EngineStats, SessionEngineEvents, SessionEngineOptions, SessionInfo } from './types.js';

/** Sessions closed per event-loop turn when many time out together; then the loop breathes. */
const EXPIRY_BATCH = 512;
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
  readonly #init: ((proc: WebProcess<Vars>) => Vars | Promise<Vars>) | undefined;
  readonly #onClose: SessionEngineOptions<Vars>['onClose'];
  readonly #store = new MemoryStore<Vars>();
  readonly #closing = new Map<string, Session<Vars>>();
  readonly #als = new AsyncLocalStorage<WebProcess<Vars>>();
  readonly #counters: Counters = createCounters();
  readonly #expiry: ExpiryTimer;
  readonly #closeContext: CloseContext<Vars>;
  readonly #leaseHost: LeaseHost<Vars>;
  readonly #sessionHost: SessionHost<Vars>;
  /** Processes counted against maxConcurrentProcesses: those of open sessions, plus 'none'-mode requests. */
  #liveProcesses = 0;
  #transientRunning = 0;
  #onTransientsDone: (() => void) | undefined;
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
    this.#init = init;
    this.#onClose = onClose;
    this.#expiry = new ExpiryTimer(clock, () => this.#expireDue());
    const engine = this;
    this.#sessionHost = { lockManager: this.#lockManager, spawn: (s, parent, name, task) => this.#spawn(s, name, task) };
    this.#leaseHost = {
      als: this.#als,
      release: (lease) => this.#release(lease),
      reportHandlerError: (error, sessionId) => this.#report(new SessionError('ERR_SESSION_HANDLER_FAILED', undefined, { cause: error, sessionId }), 'handlerErrors'),
      cookieExpiresAtMs: (s) => this.#cookieExpiresAtMs(s),
    };
    this.#closeContext = {
      clock,
      als: this.#als,
      closeTimeoutMs: () => engine.#options.closeTimeoutMs,
      hookFor: () => (engine.#options.mode === 'legacy' ? engine.#onClose : undefined),
      detach: (s, reason) => {
        engine.#store.delete(s);
        engine.#closing.set(s.id, s);
        engine.#liveProcesses -= s.processes.length;
        engine.#counters.closed[reason]++;
      },
      report: (error, kind) => engine.#report(error, kind === 'hook' ? 'hookErrors' : kind === 'hookTimeout' ? 'hookTimeouts' : 'drainTimeouts'),
      finished: (s, event) => {
        engine.#closing.delete(s.id);
        engine.emit('close', event);
      },
    };
  }

  // ---- requests -------------------------------------------------------------------------------------

  /**
   * Binds a request to a process: the session named by the cookie if it is live, not expired and from
   * the same IP, else a new session (evicting the least recently active idle one when the cap is
   * reached). Resolves when the process is free (FIFO). Rejects with a `SessionError` whose
   * `httpStatus` is the answer to give: 400 (IP mismatch) or 503 (limits, queue full, stopping).
   * This is the seam adapters use; applications use `createServer` or an adapter instead.
   */
  async acquire(request: RequestIdentity): Promise<RequestLease<Vars>> {
    let sessionId = request.sessionId;
    for (;;) {
      if (this.#stopping !== undefined) throw this.#reject('stopped', new SessionError('ERR_SESSION_STOPPED'));
      const { mode } = this.#options;
      if (mode === 'none') return this.#transient();
      const session = sessionId === undefined ? undefined : this.#store.get(sessionId);
      if (session === undefined || this.#clock.now() >= this.#cookieExpiresAtMs(session)) return this.#create(request.ip);
      if (mode === 'legacy' && this.#options.ipValidation && session.ip !== request.ip) {
        throw this.#reject('ipMismatch', new SessionError('ERR_SESSION_IP_MISMATCH', undefined, { sessionId: session.id }));
      }
      try {
        return await this.#enter(session);
      } catch (error) {
        // The session closed while this request waited in its queue: it runs in a new session instead.
        if (!(error instanceof SessionError && error.code === 'ERR_SESSION_CLOSED')) throw error;
        sessionId = undefined;
      }
    }
  }

  #enter(session: Session<Vars>): RequestLease<Vars> | Promise<RequestLease<Vars>> {
    session.lastRequestAtMs = this.#clock.now();
    const free = session.freeProcesses.pop();
    if (free !== undefined) return this.#start(session, free, false);
    const options = this.#options;
    if (session.requestProcessCount < options.processesPerSession && this.#liveProcesses < options.maxConcurrentProcesses) {
      return this.#startNewProcess(session, false);
    }
    if (session.queuedCount >= options.maxQueuedRequests) {
      throw this.#reject('queueFull', new SessionError('ERR_SESSION_QUEUE_FULL', `${session.queuedCount} waiting`, { sessionId: session.id }));
    }
    return new Promise<WebProcess<Vars>>((resolve, reject) => (session.queue ??= []).push({ resolve, reject })).then((proc) => {
      if (session.state === 'open') return new RequestLease(this.#leaseHost, session, proc, false);
      // Closed between the hand-over and this continuation: this request must not run in the old context.
      removeItem(session.running, proc);
      noteProgress(session);
      throw new SessionError('ERR_SESSION_CLOSED', 'closed while queued', { sessionId: session.id });
    });
  }

  #start(session: Session<Vars>, proc: WebProcess<Vars>, isNew: boolean): RequestLease<Vars> {
    this.#store.markBusy(session);
    session.running.push(proc);
    return new RequestLease(this.#leaseHost, session, proc, isNew);
  }

  async #startNewProcess(session: Session<Vars>, isNew: boolean): Promise<RequestLease<Vars>> {
    const proc = this.#addProcess(session, 'web');
    session.requestProcessCount++;
    const lease = this.#start(session, proc, isNew);
    try {
      proc.vars = await this.#initVars(proc);
    } catch (error) {
      lease.release();
      throw new SessionError('ERR_SESSION_INIT_FAILED', undefined, { cause: error, sessionId: session.id });
    }
    return lease;
  }

  async #create(ip: string): Promise<RequestLease<Vars>> {
    const options = this.#options;
    const cap = Math.min(options.maxSessions, options.maxConcurrentProcesses);
    while (this.#store.size >= cap || this.#liveProcesses >= options.maxConcurrentProcesses) {
      const victim = this.#store.oldestIdle();
      if (victim === undefined) {
        throw this.#store.size >= cap
          ? this.#reject('sessionLimit', new SessionError('ERR_SESSION_LIMIT', `${this.#store.size} sessions, none idle`))
          : this.#reject('processLimit', new SessionError('ERR_SESSION_PROCESS_LIMIT', `${this.#liveProcesses} processes`));
      }
      // Not awaited: the newcomer never waits for another session's hook.
      void beginClose(this.#closeContext, victim, 'evicted');
    }
    const session = new Session<Vars>(this.#sessionHost, randomUUID(), ip, this.#clock.now());
    this.#store.add(session);
    this.#counters.created++;
    let lease: RequestLease<Vars>;
    try {
      lease = await this.#startNewProcess(session, true);
    } catch (error) {
      this.#discard(session);
      throw error;
    }
    this.emit('create', { sessionId: session.id, ip });
    return lease;
  }

  /** A session whose init failed: it never existed for the client, so it goes without a hook. */
  #discard(session: Session<Vars>): void {
    if (session.state !== 'open') return;
    this.#store.delete(session);
    this.#liveProcesses -= session.processes.length;
    session.state = 'closed';
    for (const proc of session.processes.splice(0)) void processInternals.teardown(proc, {});
  }

  async #transient(): Promise<RequestLease<Vars>> {
    if (this.#liveProcesses >= this.#options.maxConcurrentProcesses) {
      throw this.#reject('processLimit', new SessionError('ERR_SESSION_PROCESS_LIMIT', `${this.#liveProcesses} processes`));
    }
    const proc = new WebProcess<Vars>(TRANSIENT_OWNER, '', 'web', {} as Vars);
    this.#liveProcesses++;
    this.#transientRunning++;
    const lease = new RequestLease(this.#leaseHost, undefined, proc, true);
    try {
      proc.vars = await this.#initVars(proc);
    } catch (error) {
      lease.release();
      throw new SessionError('ERR_SESSION_INIT_FAILED', undefined, { cause: error });
    }
    return lease;
  }

  #release(lease: RequestLease<Vars>): void {
    const { session, proc } = lease;
    if (session === undefined) {
      this.#liveProcesses--;
      void processInternals.teardown(proc, {});
      if (--this.#transientRunning === 0) this.#onTransientsDone?.();
      return;
    }
    session.lastActivityAtMs = this.#clock.now();
    if (session.state !== 'open') {
      removeItem(session.running, proc);
      noteProgress(session);
      return;
    }
    const next = session.queue?.shift();
    if (next !== undefined) return next.resolve(proc); // handed over: the session stays busy
    removeItem(session.running, proc);
    session.freeProcesses.push(proc);
    this.#settleIfIdle(session);
  }

  #settleIfIdle(session: Session<Vars>): void {
    if (session.running.length > 0 || session.queuedCount > 0 || session.state !== 'open') return;
    this.#store.markIdle(session);
    this.#scheduleExpiry();
  }

  #addProcess(session: Session<Vars>, name: string): WebProcess<Vars> {
    const proc = new WebProcess<Vars>(session, session.id, name, {} as Vars);
    session.processes.push(proc);
    this.#liveProcesses++;
    return proc;
  }

  #initVars(proc: WebProcess<Vars>): Vars | Promise<Vars> {
    return this.#init === undefined ? ({} as Vars) : this.#als.run(proc, () => this.#init!(proc));
  }

  #spawn(session: Session<Vars>, name: string, task: (proc: WebProcess<Vars>) => Promise<void>): WebProcess<Vars> {
    if (session.state !== 'open') throw new SessionError('ERR_SESSION_CLOSED', `cannot spawn "${name}"`, { sessionId: session.id });
    if (this.#liveProcesses >= this.#options.maxConcurrentProcesses) {
      throw this.#reject('processLimit', new SessionError('ERR_SESSION_PROCESS_LIMIT', `cannot spawn "${name}"`, { sessionId: session.id }));
    }
    const proc = this.#addProcess(session, name);
    this.#start(session, proc, false);
    void this.#runTask(session, proc, task);
    return proc;
  }

  async #runTask(session: Session<Vars>, proc: WebProcess<Vars>, task: (proc: WebProcess<Vars>) => Promise<void>): Promise<void> {
    try {
      proc.vars = await this.#initVars(proc);
      await this.#als.run(proc, () => task(proc));
    } catch (error) {
      this.#report(new SessionError('ERR_SESSION_TASK_FAILED', `${proc.processId} (${proc.name})`, { cause: error, sessionId: session.id }), 'taskErrors');
    }
    removeItem(session.running, proc);
    if (session.state !== 'open') return noteProgress(session); // the close pipeline hooks and tears it down
    // A task that ends on its own ends its process: no hook (its session is not closing), locks released.
    removeItem(session.processes, proc);
    this.#liveProcesses--;
    session.lastActivityAtMs = this.#clock.now();
    this.#settleIfIdle(session);
    await processInternals.teardown(proc, {});
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
    const session = this.#store.get(id) ?? this.#closing.get(id);
    if (session === undefined) return Promise.resolve(false);
    const caller = this.#als.getStore();
    const fromOwnSession = caller !== undefined && caller.sessionId === session.id;
    // From the session's own hook or teardown: it is closing already, and waiting on itself would deadlock.
    if (fromOwnSession && session.phase !== undefined && session.phase !== 'draining') return Promise.resolve(true);
    const closed = beginClose(this.#closeContext, session, 'closed');
    if (fromOwnSession && session.running.includes(caller) && !session.waitingInside.includes(caller)) {
      session.waitingInside.push(caller);
      noteProgress(session);
    }
    return closed.then(() => true);
  }

  /**
   * Graceful stop: refuses new work (503), lets running requests finish, then closes every session with
   * `'shutdown'` (hooks run in `'legacy'` mode). Idempotent.
   */
  stop(): Promise<void> {
    this.#stopping ??= this.#drainAndClose();
    return this.#stopping;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  async #drainAndClose(): Promise<void> {
    this.#expiry.cancel();
    for (const session of [...this.#store.values()]) void beginClose(this.#closeContext, session, 'shutdown');
    const transientsDone = this.#transientRunning === 0 ? undefined : new Promise<void>((resolve) => { this.#onTransientsDone = resolve; });
    await Promise.all([...this.#closing.values()].map((s) => s.closed));
    await transientsDone;
  }

  #scheduleExpiry(): void {
    const head = this.#store.oldestIdle();
    if (head === undefined || this.#stopping !== undefined) return;
    this.#expiry.ensureBy(head.lastActivityAtMs + this.#options.inactiveProcessTimeoutMs);
  }

  #expireDue(): void {
    const nowMs = this.#clock.now();
    const timeoutMs = this.#options.inactiveProcessTimeoutMs;
    let closed = 0;
    for (let head = this.#store.oldestIdle(); head !== undefined && head.lastActivityAtMs + timeoutMs <= nowMs; head = this.#store.oldestIdle()) {
      void beginClose(this.#closeContext, head, 'timeout');
      if (++closed === EXPIRY_BATCH) {
        // Mass expiry: yield to pending requests between batches.
        setImmediate(() => this.#expireDue()).unref();
        return;
      }
    }
    this.#scheduleExpiry();
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
    if (name === 'inactiveProcessTimeoutMs') {
      this.#expiry.cancel();
      this.#scheduleExpiry();
    }
    this.emit('option', { name, value: validated });
  }

  // ---- reading --------------------------------------------------------------------------------------

  /** WEB Get Current Session ID: the session of the request (or hook, or task) running now, else `''`. */
  currentSessionId(): string {
    return this.#als.getStore()?.sessionId ?? '';
  }

  /** WEB LEGACY GET SESSION EXPIRATION: when the session's cookie expires; `null` if unknown or not legacy mode. */
  sessionExpiration(id: string): Date | null {
    const session = typeof id === 'string' ? this.#store.get(id) : undefined;
    if (session === undefined || this.#options.mode !== 'legacy') return null;
    return new Date(this.#cookieExpiresAtMs(session));
  }

  /** WEB Get session process count: processes of the session (request processes and running tasks); 0 if unknown. */
  sessionProcessCount(id: string): number {
    return (typeof id === 'string' ? this.#store.get(id)?.processes.length : undefined) ?? 0;
  }

  /** Live (open) sessions, least recently created first. */
  sessions(): SessionInfo[] {
    return [...this.#store.values()].map((s) => ({
      id: s.id,
      ip: s.ip,
      createdAt: new Date(s.createdAtMs),
      lastActivityAt: new Date(s.lastActivityAtMs),
      expiresAt: new Date(this.#cookieExpiresAtMs(s)),
      processCount: s.processes.length,
      busy: !s.isIdle,
      queuedRequests: s.queuedCount,
      locks: s.processes.flatMap((p) => p.locks.held()),
    }));
  }

  stats(): EngineStats {
    let queuedRequests = 0;
    for (const s of this.#store.values()) queuedRequests += s.queuedCount;
    const sessions = this.#store.size;
    const idleSessions = this.#store.idleCount;
    const c = this.#counters;
    return {
      sessions, idleSessions, busySessions: sessions - idleSessions, closingSessions: this.#closing.size,
      processes: this.#liveProcesses, queuedRequests, created: c.created, closed: { ...c.closed }, rejected: { ...c.rejected },
      hookErrors: c.hookErrors, hookTimeouts: c.hookTimeouts, drainTimeouts: c.drainTimeouts, handlerErrors: c.handlerErrors, taskErrors: c.taskErrors,
    };
  }

  /** The lock manager of this engine's processes. */
  get lockManager(): LockManager {
    return this.#lockManager;
  }

  #cookieExpiresAtMs(session: Session<Vars>): number {
    return session.lastRequestAtMs + this.#options.inactiveSessionTimeoutMs;
  }

  #reject(cause: keyof Counters['rejected'], error: SessionError): SessionError {
    this.#counters.rejected[cause]++;
    return error;
  }

  #report(error: SessionError, counter: 'hookErrors' | 'hookTimeouts' | 'drainTimeouts' | 'handlerErrors' | 'taskErrors'): void {
    this.#counters[counter]++;
    // An 'error' event without a listener would throw and crash the server: warn instead.
    if (this.listenerCount('error') > 0) this.emit('error', error);
    else process.emitWarning(error);
  }
}

const TRANSIENT_OWNER = {
  lockManager: new MemoryLockManager(),
  spawn(): never {
    throw new SessionError('ERR_SESSION_CLOSED', "spawn needs a session ('none' mode has none)");
  },
};
