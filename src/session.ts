import { SessionError } from './errors.js';
import { timerOn, type Clock } from './clock.js';
import type { LockManager, LockRef } from './locks.js';
import type { ProcessOwner, SessionVars, WebProcess } from './process.js';
import type { RequestIdentity } from './store.js';

/** Why a session closed: 4D's three cases plus server stop. */
export type CloseReason = 'evicted' | 'timeout' | 'closed' | 'shutdown';
export type SessionState = 'open' | 'closing' | 'closed';
/** Where a closing session is in the pipeline (a caller inside the session must not wait on itself). */
export type ClosePhase = 'draining' | 'hooks' | 'teardown' | 'done';

/** A request waiting for a process of its busy session (FIFO). */
export interface Waiter<Vars extends SessionVars> {
  resolve(proc: WebProcess<Vars>): void;
  reject(error: Error): void;
  /** Its client left: it keeps its place in line but no longer counts against maxQueuedRequests. */
  clientLeft?: boolean;
  /** When it began to wait, as a rank among every waiter of the engine's process (the sessions' heads are served in this order). */
  readonly since: number;
}

/** Ranks waiters across sessions in the order they began to wait. */
let waitersSoFar = 0;

/** The sessions, those whose first waiter began to wait first ahead (a session with none last; stable otherwise). */
export function byFirstWaiter<Vars extends SessionVars>(sessions: Iterable<Session<Vars>>): Session<Vars>[] {
  const rank = (session: Session<Vars>): number => session.queue?.[0]?.since ?? Number.POSITIVE_INFINITY;
  // Two sessions with none: Infinity - Infinity is NaN, read as equal.
  return [...sessions].sort((a, b) => rank(a) - rank(b) || 0);
}

/** The engine operations a session delegates to (spawning needs the engine's limits and hooks). */
export interface SessionHost<Vars extends SessionVars> {
  readonly lockManager: LockManager;
  spawn(session: Session<Vars>, name: string, task: (proc: WebProcess<Vars>) => Promise<void>): WebProcess<Vars>;
  /** See ProcessOwner.giveBack. */
  giveBack(proc: WebProcess<Vars>, refs: LockRef[]): Promise<void>;
}

/** The fields of a session that only its close uses (see the accessors on Session). */
interface CloseState<Vars extends SessionVars> {
  phase: ClosePhase | undefined;
  closeReason: CloseReason | undefined;
  closed: Promise<void> | undefined;
  settleClosed: ((error: unknown) => void) | undefined;
  successor: Session<Vars> | undefined;
  onDrained: (() => void) | undefined;
  onRunEnded: (() => void) | undefined;
  waitingInside: WebProcess<Vars>[];
}

/**
 * One browser's session: its processes and the bookkeeping the engine needs. Plain fields on purpose:
 * it is internal, hot, and must stay small (a million idle sessions should fit in a few hundred MB).
 */
export class Session<Vars extends SessionVars> implements ProcessOwner<Vars> {
  /** Changes only through `engine.regenerate` (the store re-keys it in the same step). */
  id: string;
  readonly ip: string;
  readonly createdAtMs: number;
  /** Start of the last accepted request: the cookie's lifetime counts from here (4D: request time). */
  lastRequestAtMs: number;
  /**
   * The cookie lifetime in effect at that request (`cookieExpiresAtMs`): a lifetime raised later reaches
   * the session from its next request on, so a cookie that has expired never comes back to life.
   */
  cookieLifetimeMs: number;
  /** End of the last request: idle time counts from here. */
  lastActivityAtMs: number;
  state: SessionState = 'open';
  // The process lists start as the shared empty list and get an array of their own on their first item
  // (`withItem`), and go back to it when emptied (`withoutItem`): an idle session holds no empty array.
  /** Every live process: request processes and running spawned ones. */
  processes: WebProcess<Vars>[] = NONE;
  /** Request processes that exist (free or running), at most `processesPerSession`. */
  requestProcessCount = 0;
  /** Processes running a request or a spawned task right now. */
  running: WebProcess<Vars>[] = NONE;
  queue: Waiter<Vars>[] | undefined;

  // Intrusive links of the idle list (least recently active first).
  idlePrev: Session<Vars> | undefined;
  idleNext: Session<Vars> | undefined;
  isIdle = false;

  /** What only a closing session needs, made when the close starts: an open session carries one field for it. */
  #close: CloseState<Vars> | undefined;
  readonly #host: SessionHost<Vars>;

  constructor(host: SessionHost<Vars>, id: string, ip: string, nowMs: number, cookieLifetimeMs: number) {
    this.#host = host;
    this.id = id;
    this.ip = ip;
    this.createdAtMs = nowMs;
    this.lastRequestAtMs = nowMs;
    this.cookieLifetimeMs = cookieLifetimeMs;
    this.lastActivityAtMs = nowMs;
  }

  #closeState(): CloseState<Vars> {
    return (this.#close ??= { phase: undefined, closeReason: undefined, closed: undefined, settleClosed: undefined, successor: undefined, onDrained: undefined, onRunEnded: undefined, waitingInside: NONE });
  }

  /** Where the close is; undefined while the session is open. */
  get phase(): ClosePhase | undefined { return this.#close?.phase; }
  /** Its close has stopped waiting for its processes: its hooks have begun (or its teardown). */
  get pastDrain(): boolean {
    const phase = this.#close?.phase;
    return phase !== undefined && phase !== 'draining';
  }
  set phase(phase: ClosePhase | undefined) { this.#closeState().phase = phase; }
  get closeReason(): CloseReason | undefined { return this.#close?.closeReason; }
  set closeReason(reason: CloseReason | undefined) { this.#closeState().closeReason = reason; }
  /** The close's promise, made when someone waits for it (see closedPromise). */
  get closed(): Promise<void> | undefined { return this.#close?.closed; }
  set closed(closed: Promise<void> | undefined) { this.#closeState().closed = closed; }
  /** Settles `closed` when the pipeline ends. */
  get settleClosed(): ((error: unknown) => void) | undefined { return this.#close?.settleClosed; }
  set settleClosed(settle: ((error: unknown) => void) | undefined) { this.#closeState().settleClosed = settle; }
  /** The session that requests queued here moved to when this one closed (they share it). */
  get successor(): Session<Vars> | undefined { return this.#close?.successor; }
  set successor(successor: Session<Vars> | undefined) { this.#closeState().successor = successor; }
  /** Resolves the close pipeline's wait for in-flight work. */
  get onDrained(): (() => void) | undefined { return this.#close?.onDrained; }
  set onDrained(onDrained: (() => void) | undefined) { this.#closeState().onDrained = onDrained; }
  /** Called whenever a process of the closing (or closed) session stops running (noteProgress). */
  get onRunEnded(): (() => void) | undefined { return this.#close?.onRunEnded; }
  set onRunEnded(listener: (() => void) | undefined) { this.#closeState().onRunEnded = listener; }
  /** Processes that called `closeSession` on this session from inside and wait for it. */
  get waitingInside(): WebProcess<Vars>[] { return this.#close?.waitingInside ?? NONE; }
  set waitingInside(list: WebProcess<Vars>[]) { this.#closeState().waitingInside = list; }

  get lockManager(): LockManager {
    return this.#host.lockManager;
  }

  giveBack(proc: WebProcess<Vars>, refs: LockRef[]): Promise<void> {
    return this.#host.giveBack(proc, refs);
  }

  spawn(name: string, task: (proc: WebProcess<Vars>) => Promise<void>): WebProcess<Vars> {
    return this.#host.spawn(this, name, task);
  }

  get queuedCount(): number {
    return this.queue === undefined ? 0 : this.queue.length;
  }

  /** In-flight work the close pipeline must wait for: running processes not waiting inside `closeSession`. */
  get isDrained(): boolean {
    for (const proc of this.running) if (!this.waitingInside.includes(proc)) return false;
    return true;
  }
}

/** The empty process list every session starts with; frozen, so a push on it fails loudly instead of sharing. */
export const NONE: never[] = Object.freeze([]) as never[];

/** `list` with `item` appended: the shared empty list is replaced by a list of its own, any other grows in place. */
export function withItem<T>(list: T[], item: T): T[] {
  if (list === NONE) return [item];
  list.push(item);
  return list;
}

/**
 * `list` without `item`: the shared empty list once nothing is left, else the same list shortened in
 * place. Session lists go back to NONE when emptied: a list that emptied and grew again would hold
 * room for 17 items (V8's growth step), 136 bytes more per idle session for one process.
 */
export function withoutItem<T>(list: T[], item: T): T[] {
  if (list.length === 1 && list[0] === item) return NONE;
  removeItem(list, item);
  return list;
}

/** Removes `item` from a small array (sessions hold a handful of processes at most). */
export function removeItem<T>(list: T[], item: T): boolean {
  const index = list.indexOf(item);
  if (index < 0) return false;
  // Not splice: it would allocate an array of the removed items on every request.
  const last = list.length - 1;
  for (let i = index; i < last; i++) list[i] = list[i + 1]!;
  list.pop();
  return true;
}

/**
 * Request processes of an open session running now. Its task processes run from spawn to end, so every
 * process beyond the request processes is a running task.
 */
export function runningRequestCount(session: Session<SessionVars>): number {
  return session.running.length - (session.processes.length - session.requestProcessCount);
}

/**
 * A request process of the session not running a request, if any. No list of free processes is kept
 * (an idle session would pay an array for it): a spawned process is in `running` for as long as it is
 * in `processes` (it leaves both when its task ends), so a listed process not running is a free request
 * process.
 */
export function freeRequestProcess<Vars extends SessionVars>(session: Session<Vars>): WebProcess<Vars> | undefined {
  const { processes, running } = session;
  for (const proc of processes) if (!running.includes(proc)) return proc;
  return undefined;
}

/**
 * When a session's cookie expires: its last request plus the lifetime in effect then, or the current
 * one if lowered since (a lowered lifetime applies to live sessions at once; a raised one from their
 * next request on, as the browser's cookie carries the old Expires until then).
 */
export function cookieExpiresAtMs(lastRequestAtMs: number, lifetimeThenMs: number, lifetimeNowMs: number): number {
  return lastRequestAtMs + Math.min(lifetimeThenMs, lifetimeNowMs);
}

/**
 * Waits in the session's FIFO queue until a release hands this request a process (or the close refuses
 * it). After `timeoutMs` on the clock it leaves the queue and the wait fails with `timedOut()`.
 */
export function waitInQueue<Vars extends SessionVars>(session: Session<Vars>, clock: Clock, timeoutMs: number, timedOut: () => Error, request?: RequestIdentity): Promise<WebProcess<Vars>> {
  return new Promise<WebProcess<Vars>>((resolve, reject) => {
    let stopWatching: (() => void) | undefined;
    const waiter: Waiter<Vars> = {
      since: ++waitersSoFar,
      resolve: (proc) => { timer.cancel(); stopWatching?.(); resolve(proc); },
      reject: (error) => { timer.cancel(); stopWatching?.(); reject(error); },
    };
    const timer = timerOn(clock, () => {
      // Taken off the queue already (a place for a process of its own is being made for it, its init
      // running): it gets that process; refusing it now would leave the process running for nobody.
      if (session.queue === undefined || !removeItem(session.queue, waiter)) return;
      waiter.reject(timedOut());
    }, timeoutMs);
    (session.queue ??= []).push(waiter);
    stopWatching = request?.watchClientLeaving?.(() => { waiter.clientLeft = true; });
  });
}

/**
 * Refuses every request waiting in the session's queue with ERR_SESSION_CLOSED (`why`): they never run in
 * it, and each is rebound to a new session (its session closed, or was discarded as its init failed).
 */
export function refuseQueued<Vars extends SessionVars>(session: Session<Vars>, why: string): void {
  const queue = session.queue;
  session.queue = undefined;
  if (queue !== undefined) for (const waiter of queue) waiter.reject(new SessionError('ERR_SESSION_CLOSED', why, { sessionId: session.id }));
}

/** Requests waiting in the session's queue that count against maxQueuedRequests: those whose client is still there. */
export function countedWaiters<Vars extends SessionVars>(session: Session<Vars>): number {
  let counted = 0;
  for (const waiter of session.queue ?? NONE_WAITING) if (waiter.clientLeft !== true) counted++;
  return counted;
}

const NONE_WAITING: readonly never[] = [];
