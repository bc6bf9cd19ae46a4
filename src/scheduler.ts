import { msLeft, type WaitDeadline } from './clock.js';
import { newSessionId } from './session-id.js';
import { closeNow, noteProgress } from './close.js';
import { SessionError } from './errors.js';
import { IdleExpiry } from './expiry.js';
import { releaseDeadlines, RequestLease, type LeaseHost } from './lease.js';
import type { LockManager } from './locks.js';
import { isThenable, type MaybePromise } from './maybe-async.js';
import { MemoryCloses } from './memory-closes.js';
import { MemoryStore } from './memory-store.js';
import { processInternals, type SessionVars, type WebProcess } from './process.js';
import { makeRoom, type RoomHost } from './room.js';
import { cookieExpiresAtMs, countedWaiters, freeRequestProcess, NONE, refuseQueued, runningRequestCount, Session, waitInQueue, withItem, withoutItem, type SessionHost } from './session.js';
import { SessionProcesses } from './session-processes.js';
import type { Counters } from './stats.js';
import { giveBackLocks, renameLocks, renewLocks, tearDown, type RequestIdentity, type StoreContext } from './store.js';
import { TransientProcesses } from './transients.js';

/** What the scheduler needs from its engine: the store context plus the lock manager its processes use. */
export interface SchedulerContext<Vars extends SessionVars> extends StoreContext<Vars> {
  readonly lockManager: LockManager;
}

/**
 * Binds requests to processes: finds or creates the session (evicting at the cap), hands out processes
 * one request at a time with a FIFO queue (SessionProcesses starts them, spawned tasks included), and
 * closes idle sessions at their deadline with one timer. It owns every session, open or closing.
 */
export class Scheduler<Vars extends SessionVars> {
  readonly store = new MemoryStore<Vars>();
  readonly closes: MemoryCloses<Vars>;
  readonly #ctx: SchedulerContext<Vars>;
  readonly #expiry: IdleExpiry<Vars>;
  readonly #leaseHost: LeaseHost<Vars, Session<Vars>>;
  readonly #sessionHost: SessionHost<Vars>;
  readonly #processes: SessionProcesses<Vars>;
  readonly #transients: TransientProcesses<Vars>;
  readonly #room: RoomHost<Vars>;

  constructor(ctx: SchedulerContext<Vars>) {
    this.#ctx = ctx;
    this.#expiry = new IdleExpiry(ctx.clock, this.store, () => ctx.options.inactiveProcessTimeoutMs, (session) => closeNow(this.closes.context, session, 'timeout'));
    this.#processes = new SessionProcesses(ctx, {
      start: (session, proc, isNewSession) => this.#start(session, proc, isNewSession),
      settleIfIdle: (session) => this.#settleIfIdle(session),
      reject: (cause, error) => this.reject(cause, error),
    });
    this.#sessionHost = { lockManager: ctx.lockManager, spawn: (session, name, task) => this.#processes.spawn(session, name, task), giveBack: (proc, refs) => giveBackLocks(ctx, ctx.lockManager, proc, refs) };
    this.#transients = new TransientProcesses(ctx, ctx.lockManager);
    this.#leaseHost = {
      als: ctx.als,
      release: (lease) => this.#release(lease),
      reportHandlerError: ctx.reportHandlerError,
      cookieExpiresAtMs: (session) => this.cookieExpiresAtMs(session),
      ...releaseDeadlines(ctx),
    };
    this.closes = new MemoryCloses(ctx, this.store, (session) => this.#processes.uncount(session));
    this.#room = {
      store: this.store,
      processes: this.#processes,
      options: ctx.options,
      evict: (session) => closeNow(this.closes.context, session, 'evicted'),
      reject: (cause, error) => this.reject(cause, error),
    };
  }

  get liveProcesses(): number {
    return this.#processes.live;
  }

  cookieExpiresAtMs(session: Session<Vars>): number {
    return cookieExpiresAtMs(session.lastRequestAtMs, session.cookieLifetimeMs, this.#ctx.options.inactiveSessionTimeoutMs);
  }

  /**
   * The cookie lifetime was set: a lower one is each live session's from now on (a raise made later
   * reaches a session only with its next request), so a cookie that expires under it stays expired.
   * One pass over the sessions, on an operator's call.
   */
  lowerCookieLifetimes(): void {
    const lifetimeMs = this.#ctx.options.inactiveSessionTimeoutMs;
    for (const session of this.store.values()) if (session.cookieLifetimeMs > lifetimeMs) session.cookieLifetimeMs = lifetimeMs;
  }

  /** An open session whose cookie is still valid, or undefined. */
  findLive(id: string | undefined): Session<Vars> | undefined {
    const session = id === undefined ? undefined : this.store.get(id);
    return session !== undefined && this.#ctx.clock.now() < this.cookieExpiresAtMs(session) ? session : undefined;
  }

  /**
   * Takes a free process of the session, or waits for one (FIFO) until `queueDeadline` (by default
   * queueTimeoutMs from now). Rejects ERR_SESSION_CLOSED if the session closes meanwhile.
   */
  enter(session: Session<Vars>, queueDeadline?: WaitDeadline, request?: RequestIdentity): RequestLease<Vars> | Promise<RequestLease<Vars>> {
    const options = this.#ctx.options;
    // A lowered processesPerSession applies at once: a session with more processes runs no more at a time.
    const free = runningRequestCount(session) < options.processesPerSession ? freeRequestProcess(session) : undefined;
    // First come, first served: a newcomer never overtakes the requests already waiting, even when
    // there is room for one more process now (processesPerSession raised, a process place freed).
    const canAddProcess = free === undefined && session.queuedCount === 0 && session.requestProcessCount < options.processesPerSession && this.#processes.hasRoom;
    // Waiters whose client left keep their place in line but do not count (counted only at the bound).
    // A request moved here from its closed session (queueDeadline given) was waiting already: a lowered
    // maxQueuedRequests refuses newcomers, never a request already waiting, wherever it goes on waiting.
    if (free === undefined && !canAddProcess && queueDeadline === undefined && session.queuedCount >= options.maxQueuedRequests && countedWaiters(session) >= options.maxQueuedRequests) {
      throw this.reject('queueFull', new SessionError('ERR_SESSION_QUEUE_FULL', `${session.queuedCount} waiting`, { sessionId: session.id }));
    }
    // Only a request that gets a process restarts the cookie's lifetime, from when it came (a refused
    // one, at the door or after waiting in the queue, must not extend it).
    const arrivedAtMs = this.#ctx.clock.now();
    if (free !== undefined || canAddProcess) {
      session.lastRequestAtMs = arrivedAtMs;
      session.cookieLifetimeMs = options.inactiveSessionTimeoutMs;
    }
    if (free !== undefined) return this.#start(session, free);
    if (canAddProcess) return this.#processes.startRequestProcess(session, false);
    // Waits; if only maxConcurrentProcesses stands in the way, the next free place is its.
    if (session.requestProcessCount < options.processesPerSession && !this.#processes.hasRoom) this.#processes.waitForRoom(session);
    const timedOut = (): SessionError => this.reject('queueTimeout', new SessionError('ERR_SESSION_QUEUE_TIMEOUT', `after ${options.queueTimeoutMs} ms`, { sessionId: session.id }));
    const waitMs = queueDeadline === undefined ? options.queueTimeoutMs : msLeft(this.#ctx.clock, queueDeadline);
    if (waitMs <= 0) throw timedOut();
    return waitInQueue(session, this.#ctx.clock, waitMs, timedOut, request).then((proc) => {
      if (session.state === 'open') {
        if (session.lastRequestAtMs < arrivedAtMs) session.lastRequestAtMs = arrivedAtMs;
        session.cookieLifetimeMs = this.#ctx.options.inactiveSessionTimeoutMs;
        return new RequestLease(this.#leaseHost, session, proc, false);
      }
      // Closed between the hand-over and this continuation: this request must not run in the old context.
      session.running = withoutItem(session.running, proc);
      noteProgress(session);
      throw new SessionError('ERR_SESSION_CLOSED', 'closed while queued', { sessionId: session.id });
    });
  }

  /**
   * A new session for this request, evicting the least recently active idle ones while there is no room.
   * The lease itself when `init` is synchronous, else a promise; a refusal throws.
   */
  create(ip: string, onSession?: (session: Session<Vars>) => void): MaybePromise<RequestLease<Vars>> {
    const options = this.#ctx.options;
    makeRoom(this.#room, Math.min(options.maxSessions, options.maxConcurrentProcesses));
    const session = new Session<Vars>(this.#sessionHost, newSessionId(), ip, this.#ctx.clock.now(), options.inactiveSessionTimeoutMs);
    this.store.add(session);
    onSession?.(session);
    let lease: MaybePromise<RequestLease<Vars>>;
    try {
      lease = this.#processes.startRequestProcess(session, true);
    } catch (error) {
      this.#discard(session);
      throw error;
    }
    // Counted and announced once its process has a context: a session whose init failed was never made.
    if (!isThenable(lease)) {
      this.#born(session.id, ip);
      return lease;
    }
    // Until its first init ends, a close of it is not said (MemoryCloses.unborn); a synchronous init
    // leaves no moment for a close.
    this.closes.unborn.add(session);
    return lease.then((started) => {
      this.closes.unborn.delete(session);
      this.#born(session.id, ip);
      return started;
    }, (error: unknown) => {
      if (session.state !== 'closing') this.closes.unborn.delete(session);
      this.#discard(session);
      throw error;
    });
  }

  #born(sessionId: string, ip: string): void {
    this.#ctx.counters.created++;
    this.#ctx.created({ sessionId, ip });
  }

  /** 'none' mode: a throw-away process for one request, torn down at release. */
  transient(): MaybePromise<RequestLease<Vars>> {
    // Sessions left from before a switch to 'none' serve no request (none reads a cookie): the least
    // recently active idle ones give their processes' places, as they would to a new session.
    makeRoom(this.#room, Number.POSITIVE_INFINITY);
    this.#processes.countTransient(1);
    return this.#transients.start(this.#leaseHost, (proc) => this.#processes.initVars(proc));
  }

  /**
   * Moves an open session to a fresh random id; the old id is dead at once. A lock manager that keeps
   * the session id of each lock (renameSession) is told before the promise resolves.
   */
  regenerate(session: Session<Vars>): string | Promise<string> {
    this.store.rename(session, newSessionId());
    const id = session.id;
    if (this.#ctx.lockManager.renameSession === undefined || session.processes.length === 0) return id;
    return renameLocks(this.#ctx, this.#ctx.lockManager, session.processes.map((proc) => proc.processId), id).then(() => id);
  }

  /** Counts a refused request under `cause` and gives its error back, to throw. */
  reject(cause: keyof Counters['rejected'], error: SessionError): SessionError {
    this.#ctx.counters.rejected[cause]++;
    return error;
  }

  #start(session: Session<Vars>, proc: WebProcess<Vars>, isNew = false): RequestLease<Vars> {
    this.store.markBusy(session);
    session.running = withItem(session.running, proc);
    return new RequestLease(this.#leaseHost, session, proc, isNew);
  }

  /** A session whose init failed: it never existed for the client, so it goes without a hook. */
  #discard(session: Session<Vars>): void {
    if (session.state !== 'open') return;
    this.store.delete(session);
    this.#processes.uncount(session);
    session.state = 'closed';
    // Requests queued in it (moved here from a closed session, whose successor this was) go on to another
    // session, as after a close, instead of waiting out queueTimeoutMs here.
    refuseQueued(session, 'its session was discarded (init failed)');
    const processes = session.processes;
    session.processes = NONE;
    for (const proc of processes) {
      // A task its init spawned is asked to stop (its session is gone).
      processInternals.abort(proc, () => new SessionError('ERR_SESSION_CLOSED', 'its session was discarded', { sessionId: session.id }));
      void tearDown(this.#ctx, proc);
    }
  }

  #release(lease: RequestLease<Vars, Session<Vars>>): void {
    const { session, proc } = lease;
    if (session === undefined) {
      this.#processes.countTransient(-1);
      this.#transients.end(proc);
      return;
    }
    session.lastActivityAtMs = this.#ctx.clock.now();
    // Every process of the session holding locks (processesPerSession > 1: requests one at a time all
    // run on its first free process; a task's locks too): the session works, none of its locks may expire.
    if (this.#ctx.lockManager.touch !== undefined) for (const held of session.processes) if (held.lockCount > 0) void renewLocks(this.#ctx, this.#ctx.lockManager, held);
    if (session.state !== 'open') {
      session.running = withoutItem(session.running, proc);
      noteProgress(session);
      return;
    }
    if (!session.running.includes(proc)) return; // its process was dropped (failed init)
    const next = runningRequestCount(session) <= this.#ctx.options.processesPerSession ? session.queue?.shift() : undefined;
    if (next !== undefined) return next.resolve(proc); // handed over: the session stays busy
    session.running = withoutItem(session.running, proc); // free again (see freeRequestProcess)
    this.#settleIfIdle(session);
  }

  /** Room for more request processes was made: the waiting requests take it (SessionProcesses.admitWaiters). */
  admitWaiters(): void {
    this.#processes.admitAll(this.store.values());
  }

  #settleIfIdle(session: Session<Vars>): void {
    if (session.running.length > 0 || session.queuedCount > 0 || session.state !== 'open') return;
    this.store.markIdle(session);
    this.scheduleExpiry();
  }

  // ---- expiry and stop ------------------------------------------------------------------------------

  scheduleExpiry(): void {
    this.#expiry.schedule();
  }

  /** The timeout changed: re-arm on the new earliest deadline (which may be due now). */
  rescheduleExpiry(): void {
    this.#expiry.reschedule();
  }

  /**
   * Closes every session with 'shutdown' and waits for every close and every 'none'-mode request.
   * `caller` (a process that called stop() from its own request) is not waited for.
   */
  async closeAll(caller: WebProcess<Vars> | undefined): Promise<void> {
    this.#expiry.stop();
    const closes = this.closes.closeEvery(caller);
    await this.#transients.drain(caller, this.#ctx.clock, this.#ctx.options.closeTimeoutMs, (error) => this.#ctx.report(error, 'drainTimeouts'));
    await closes;
  }
}
