import cluster from 'node:cluster';
import { waitDeadline, type WaitDeadline } from './clock.js';
import { beginClose, TIMED_OUT, within } from './close.js';
import { CloseWaits, type CloseBlockers } from './close-waits.js';
import { SessionArgumentError, SessionError } from './errors.js';
import { RequestLease } from './lease.js';
import { lockManagerFor } from './lock-renewals.js';
import { MemoryLockManager, type LockManager } from './locks.js';
import { isThenable, type MaybePromise } from './maybe-async.js';
import type { SessionVars, WebProcess } from './process.js';
import { Scheduler } from './scheduler.js';
import type { Session } from './session.js';
import type { AttachedStore, RequestIdentity, SessionStore, StoreContext, StoreGauges } from './store.js';
import type { ProcessRun } from './runs.js';
import type { SessionInfo } from './types.js';

/**
 * The default store: live sessions in this process's memory, no serialization on the hot path. Each
 * call makes a store for one engine.
 *
 * @example
 * new SessionEngine({ store: memoryStore() }); // the same as new SessionEngine()
 */
export function memoryStore(): SessionStore {
  let attached = false;
  return {
    attach<Vars extends SessionVars>(context: StoreContext<Vars>): AttachedStore<Vars> {
      if (attached) throw new SessionArgumentError('a memory store serves one engine: make one memoryStore() per engine');
      attached = true;
      warnIfClusterWorker();
      return new MemorySessions(context);
    },
  };
}

let warnedPerProcess = false;

/**
 * node:cluster hands each connection to any worker: with sessions in each worker's memory, a user's next
 * request lands where its cookie names nothing and gets a new session. Said once per process.
 */
function warnIfClusterWorker(): void {
  if (warnedPerProcess || !cluster.isWorker) return;
  warnedPerProcess = true;
  process.emitWarning(new SessionError('ERR_SESSION_STORE_PER_PROCESS', 'a request the cluster hands to another worker gets a new session: keep the sessions in Redis (createRedisStore from legacy-web-sessions/redis), or run one process'));
}

/** The memory store attached to its engine: request binding, closing and reads over the scheduler. */
class MemorySessions<Vars extends SessionVars> implements AttachedStore<Vars> {
  readonly lockManager: LockManager;
  readonly #ctx: StoreContext<Vars>;
  readonly #scheduler: Scheduler<Vars>;
  readonly #closeWaits = new CloseWaits<Vars>((id) => this.#blockersOf(id));
  #refusing = false;
  /** Requests that called stop() again while it ran, with their sessions (see #joinersEnded). */
  readonly #stopJoiners = new Map<RequestLease<Vars>, Session<Vars>>();
  /** The process whose run began the stop: its stop waits for nobody's call again from that run (it would wait for itself). */
  #stopCaller: WebProcess<Vars> | undefined;

  constructor(ctx: StoreContext<Vars>) {
    this.#ctx = ctx;
    this.lockManager = ctx.locks ?? new MemoryLockManager(() => ctx.clock.now());
    this.#scheduler = new Scheduler<Vars>({ ...ctx, lockManager: lockManagerFor(ctx, this.lockManager) });
  }

  acquire(request: RequestIdentity): MaybePromise<RequestLease<Vars>> {
    return this.#bind(request, this.#scheduler.findLive(request.sessionId), undefined, undefined);
  }

  /** `closedWhileQueued`: the session this request waited for, which closed; `queueDeadline`: when its wait ends, wherever it goes on. */
  #bind(request: RequestIdentity, session: Session<Vars> | undefined, closedWhileQueued: Session<Vars> | undefined, queueDeadline: WaitDeadline | undefined): MaybePromise<RequestLease<Vars>> {
    const scheduler = this.#scheduler;
    if (this.#refusing) throw scheduler.reject('stopped', new SessionError('ERR_SESSION_STOPPED'));
    const { mode } = this.#ctx.options;
    if (mode === 'none') return scheduler.transient();
    if (session === undefined) {
      return scheduler.create(request.ip, closedWhileQueued === undefined ? undefined : (created) => { closedWhileQueued.successor = created; });
    }
    if (mode === 'legacy' && this.#ctx.options.ipValidation && session.ip !== request.ip) {
      throw scheduler.reject('ipMismatch', new SessionError('ERR_SESSION_IP_MISMATCH', undefined, { sessionId: session.id }));
    }
    // A free process is taken at once; only a request that has to queue gets a promise.
    const entered = scheduler.enter(session, queueDeadline, request);
    if (!isThenable(entered)) return entered;
    // Read in the tick enter began its wait, so the same as the deadline it set.
    const deadline = queueDeadline ?? waitDeadline(this.#ctx.clock, this.#ctx.options.queueTimeoutMs);
    return entered.catch((error: unknown) => {
      if (!(error instanceof SessionError && error.code === 'ERR_SESSION_CLOSED')) throw error;
      // The session closed while this request waited in its queue. It runs in a new session instead;
      // the other requests queued with the same cookie join that one rather than each making its own,
      // and wait there only for what is left of their queue timeout.
      const successor = session.successor;
      return this.#bind(request, successor !== undefined && successor.state === 'open' ? successor : undefined, session, deadline);
    });
  }

  closeSession(id: string, run: ProcessRun<Vars> | undefined): Promise<boolean> {
    const caller = run?.proc;
    const fromHook = run?.hook === true;
    const session = this.#scheduler.closes.find(id);
    if (session === undefined) return Promise.resolve(false);
    const fromOwnSession = caller !== undefined && caller.sessionId === session.id;
    // From the session's own hook or teardown: it is closing already, and waiting on itself would deadlock.
    if (fromOwnSession && session.pastDrain) return Promise.resolve(true);
    // From a hook of another session about a session closing already: true at once, as 4D's command is a
    // no-op on a close under way. Waiting could close a cycle ("log out on every device" from two
    // sessions whose hooks each await the other's close), held until closeTimeoutMs.
    if (fromHook && !fromOwnSession && session.state === 'closing') return Promise.resolve(true);
    const closing = beginClose(this.#scheduler.closes.context, session, 'closed', fromOwnSession ? caller : undefined).then(() => true);
    return this.#closeWaits.watch(closing, run, id);
  }

  /** What the close of `id` waits for: its running requests and tasks (but a logout's caller), then its hooks. */
  #blockersOf(id: string): CloseBlockers<Vars> | undefined {
    const session = this.#scheduler.closes.closing.get(id);
    if (session?.phase === 'draining') return { processes: session.running.filter((p) => !session.waitingInside.includes(p)), hooks: false };
    if (session?.phase === 'hooks') return { processes: session.processes, hooks: true };
    return undefined;
  }

  regenerate(id: string): Promise<string | null> {
    const session = this.#scheduler.store.get(id);
    return Promise.resolve(session === undefined ? null : this.#scheduler.regenerate(session));
  }

  refuse(): void {
    this.#refusing = true;
  }

  stop(caller: WebProcess<Vars> | undefined): Promise<void> {
    this.#stopCaller = caller;
    return this.#scheduler.closeAll(caller).then(() => this.#joinersEnded());
  }

  joinStop(run: ProcessRun<Vars>): Promise<void> {
    // A hook's session is past its drain; the first call began every open session's close (a hook may
    // run within that very call). A request, task or init: marked, then the others' closes waited for.
    if (run.hook === true) return Promise.resolve();
    const closes = this.#scheduler.closes.closeEvery(run.proc);
    const session = this.#scheduler.closes.closing.get(run.proc.sessionId);
    // The first caller calling stop() again (`Promise.all([engine.stop(), engine.stop()])`) may await the
    // stop it began: that stop does not wait for it, as before.
    if (run instanceof RequestLease && session !== undefined && run.proc !== this.#stopCaller) this.#stopJoiners.set(run, session);
    return closes.then(() => undefined);
  }

  /**
   * The stop ends once the requests that called it again have been released too (their sessions' closes
   * did not wait for them), closeTimeoutMs at most, as a Redis node's drain waits for them: an
   * application that exits after `await engine.stop()` does not cut their answers.
   */
  async #joinersEnded(): Promise<void> {
    const running = (): boolean => [...this.#stopJoiners.keys()].some((lease) => !lease.released);
    if (!running()) return;
    const ended = new Promise<void>((resolve) => {
      const check = (): void => { if (!running()) resolve(); };
      for (const session of this.#stopJoiners.values()) session.onRunEnded = check;
    });
    const { clock, options, report } = this.#ctx;
    if (await within(clock, options.closeTimeoutMs, ended) === TIMED_OUT) {
      report(new SessionError('ERR_SESSION_DRAIN_TIMEOUT', `a request that called stop() still running after ${options.closeTimeoutMs} ms`), 'drainTimeouts');
    }
  }

  optionChanged(name: string): void {
    if (name === 'inactiveProcessTimeoutMs') this.#scheduler.rescheduleExpiry();
    if (name === 'inactiveSessionTimeoutMs') this.#scheduler.lowerCookieLifetimes();
    if (name === 'processesPerSession' || name === 'maxConcurrentProcesses') this.#scheduler.admitWaiters();
  }

  expiresAtMs(id: string): number | undefined {
    const session = this.#scheduler.store.get(id);
    return session === undefined ? undefined : this.#scheduler.cookieExpiresAtMs(session);
  }

  processCount(id: string): number {
    return this.#scheduler.store.get(id)?.processes.length ?? 0;
  }

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

  gauges(): StoreGauges {
    let queuedRequests = 0;
    let locksHeld = 0;
    const store = this.#scheduler.store;
    for (const s of store.values()) {
      queuedRequests += s.queuedCount;
      for (const proc of s.processes) locksHeld += proc.lockCount;
    }
    return {
      sessions: store.size, idleSessions: store.idleCount, closingSessions: this.#scheduler.closes.closing.size,
      processes: this.#scheduler.liveProcesses, queuedRequests, locksHeld,
    };
  }
}
