import type { AsyncLocalStorage } from 'node:async_hooks';
import type { Clock } from './clock.js';
import { SessionError } from './errors.js';
import type { RequestLease } from './lease.js';
import type { LockManager, LockRef } from './locks.js';
import type { MaybePromise } from './maybe-async.js';
import type { OptionName, RuntimeOptions } from './options.js';
import { processInternals, type SessionVars, type WebProcess } from './process.js';
import type { ProcessRun } from './runs.js';
import type { CloseReason } from './session.js';
import type { Counters } from './stats.js';
import type { CloseEvent, CreateEvent, SessionInfo } from './types.js';

// The seam between the engine and where sessions live. The engine (options, events, async context, the
// 4D commands, every HTTP adapter) is the same whatever the store; a store decides how a request finds
// its process, how a session is created at the cap, and how it is closed: the memory store with live
// objects and one lock-free event loop, the Redis store with serialized state and atomic scripts.

/** Where a request comes from, as the HTTP binding read it. */
export interface RequestIdentity {
  /** The session id the client's cookie carries, if any (never adopted: an unknown id gets a new session). */
  readonly sessionId: string | undefined;
  readonly ip: string;
  /**
   * The identity read again (the HTTP binding's): a store that had to wait for its start before taking
   * the request calls it, since the options it was read with (the cookie's name, `trustProxy`) may have
   * been the constructor's rather than the cluster's.
   */
  readonly reread?: () => RequestIdentity;
  /**
   * Called by a store when the request has to wait in its session's queue: `left` is to be called if
   * the client leaves first. The request keeps its place in line (it still runs in turn, its answer
   * going nowhere) but stops counting against `maxQueuedRequests`. Returns what stops the watching.
   */
  watchClientLeaving?(left: () => void): () => void;
}

/** The counter a reported error adds to; `'processLimit'` is `rejected.processLimit` (a refusal said on 'error'). */
export type ReportCounter = 'hookErrors' | 'hookTimeouts' | 'drainTimeouts' | 'handlerErrors' | 'taskErrors' | 'storeErrors' | 'processLimit';

/** What an engine lends the store it runs on. */
export interface StoreContext<Vars extends SessionVars> {
  /** The engine's live options object: changes through setOption are seen at once. */
  readonly options: RuntimeOptions;
  readonly clock: Clock;
  readonly als: AsyncLocalStorage<ProcessRun<Vars>>;
  readonly counters: Counters;
  /** The lock manager the application passed (`locks`), if any. */
  readonly locks: LockManager | undefined;
  readonly init: ((proc: WebProcess<Vars>) => Vars | Promise<Vars>) | undefined;
  readonly onClose: ((proc: WebProcess<Vars>, reason: CloseReason) => void | Promise<void>) | undefined;
  report(error: SessionError, counter: ReportCounter): void;
  /** A request handler failed: ERR_SESSION_HANDLER_FAILED on `'error'`, counted in `handlerErrors`. */
  reportHandlerError(error: unknown, sessionId: string): void;
  created(event: CreateEvent): void;
  closed(event: CloseEvent): void;
  /** An option changed elsewhere (another node of a shared store): validate and apply it here. */
  applyOption(name: OptionName, value: unknown): void;
}

/** Gauges a store reports for `engine.stats()`. */
export interface StoreGauges {
  readonly sessions: number;
  readonly idleSessions: number;
  readonly closingSessions: number;
  readonly processes: number;
  readonly queuedRequests: number;
  readonly locksHeld: number;
}

/**
 * A store attached to one engine: the operations the engine delegates. Reads (`expiresAtMs`,
 * `processCount`, `sessions`, `gauges`) are synchronous: a networked store answers them from what this
 * node knows and offers cluster-wide reads of its own.
 */
export interface AttachedStore<Vars extends SessionVars> {
  readonly lockManager: LockManager;
  /**
   * Binds a request to a process (see `SessionEngine.acquireNow`): the lease itself when it can be had
   * at once, a promise when the request waits (or the store needs a round trip), a thrown
   * `SessionError` when it is refused at once.
   */
  acquire(request: RequestIdentity): MaybePromise<RequestLease<Vars>>;
  /** WEB LEGACY CLOSE SESSION; `run` is the run making the call (a request, task or hook of its process), if any. */
  closeSession(id: string, run: ProcessRun<Vars> | undefined): Promise<boolean>;
  /** `engine.regenerate`; `caller` is the process running the call, if any (its own release follows the new id). */
  regenerate(id: string, caller: WebProcess<Vars> | undefined): Promise<string | null>;
  /** Refuses new work from now on (every later acquire rejects ERR_SESSION_STOPPED). */
  refuse(): void;
  /** Drains and closes what this store must close at shutdown; `caller` is not waited for. */
  stop(caller: WebProcess<Vars> | undefined): Promise<void>;
  /**
   * A stop under way, called again from `run` (a request, task or init): resolves once the closes the
   * stop runs have ended, the run's own session's close not waiting for it (as for the first caller).
   * From a hook, once the closes have begun: a hook never waits for closes under way (two hooks would
   * wait on each other). Awaiting the whole stop would wait for the caller. The stop itself ends once
   * such a request has ended too (its answer is not cut by an application exiting after the stop).
   */
  joinStop(run: ProcessRun<Vars>): Promise<void>;
  /** An option changed on this engine (setOption), already validated and applied to `options`; `previous` its value before. */
  optionChanged(name: OptionName, value: unknown, previous: unknown): void;
  /** When the session's cookie expires, or undefined for an unknown session. */
  expiresAtMs(id: string): number | undefined;
  processCount(id: string): number;
  sessions(): SessionInfo[];
  gauges(): StoreGauges;
}

/**
 * Where an engine keeps its sessions: `memoryStore()` (the default) or `createRedisStore()` from
 * `legacy-web-sessions/redis`. A store object serves one engine.
 */
export interface SessionStore {
  /** @internal Called once by the engine's constructor. */
  attach<Vars extends SessionVars>(context: StoreContext<Vars>): AttachedStore<Vars>;
}

/**
 * `init` failed for a request's new process: the request gets a 500 and the operator hears of it on
 * `'error'` (counted in `handlerErrors`: `init` is the application's code run for the request).
 */
export function initFailure(ctx: Pick<StoreContext<SessionVars>, 'report'>, cause: unknown, sessionId?: string): SessionError {
  const error = new SessionError('ERR_SESSION_INIT_FAILED', undefined, { cause, sessionId });
  ctx.report(error, 'handlerErrors');
  return error;
}

/**
 * Tears a process down: selections cleared, record locks released, vars reset. A lock manager that fails
 * to release is reported (ERR_SESSION_STORE_UNAVAILABLE, counted in `storeErrors`), never thrown: the
 * close or discard goes on, and no promise is left to reject unhandled (which would end the process).
 * undefined when there was no lock to give back (done at once).
 */
export function tearDown(ctx: Pick<StoreContext<SessionVars>, 'report'>, proc: WebProcess<SessionVars>): Promise<void> | undefined {
  return processInternals.teardown(proc)?.catch((error: unknown) => reportLocksKept(ctx, proc, error));
}

/**
 * Gives back record locks a torn-down process took meanwhile (ProcessOwner.giveBack): a lock manager
 * that fails to release is reported as at a teardown, never thrown.
 */
export async function giveBackLocks(ctx: Pick<StoreContext<SessionVars>, 'report'>, lockManager: LockManager, proc: WebProcess<SessionVars>, refs: LockRef[]): Promise<void> {
  // Awaited inside: a manager that throws at the call (rather than rejecting) is reported too, as at a teardown.
  try {
    await lockManager.releaseAll(proc, refs);
  } catch (error) {
    reportLocksKept(ctx, proc, error);
  }
}

function reportLocksKept(ctx: Pick<StoreContext<SessionVars>, 'report'>, proc: WebProcess<SessionVars>, error: unknown): void {
  ctx.report(new SessionError('ERR_SESSION_STORE_UNAVAILABLE', `the record locks of ${proc.processId} were not released`, { cause: error, sessionId: proc.sessionId }), 'storeErrors');
}

/**
 * A request of a process holding record locks has ended: a lock manager whose locks expire
 * (`LockManager.touch`, RedisLockManager) gives them a full lifetime again, so a working session never
 * loses them to another node. A failure is reported (`storeErrors`), never thrown.
 */
export async function renewLocks(ctx: Pick<StoreContext<SessionVars>, 'report'>, lockManager: LockManager, proc: WebProcess<SessionVars>): Promise<void> {
  try {
    await lockManager.touch?.(proc.processId);
  } catch (error) {
    ctx.report(new SessionError('ERR_SESSION_STORE_UNAVAILABLE', `the record locks of ${proc.processId} were not renewed`, { cause: error, sessionId: proc.sessionId }), 'storeErrors');
  }
}

/**
 * A session got a new id (`regenerate`): a lock manager that keeps each lock's session id itself
 * (`LockManager.renameSession`, RedisLockManager) reports the new one in `lockedBy` from then on. A
 * failure is reported (`storeErrors`), never thrown: the rename stands.
 */
export async function renameLocks(ctx: Pick<StoreContext<SessionVars>, 'report'>, lockManager: LockManager, processIds: readonly string[], newSessionId: string): Promise<void> {
  try {
    await lockManager.renameSession?.(processIds, newSessionId);
  } catch (error) {
    ctx.report(new SessionError('ERR_SESSION_STORE_UNAVAILABLE', 'regenerate: the record locks still show the old session id', { cause: error, sessionId: newSessionId }), 'storeErrors');
  }
}
