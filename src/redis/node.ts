import type { Redis } from 'ioredis';
import { SessionError } from '../errors.js';
import type { LockManager, LockRef } from '../locks.js';
import type { RedisLockManager } from './locks.js';
import { processInternals, type ProcessOwner, type SessionVars, type WebProcess } from '../process.js';
import { cookieExpiresAtMs, type SessionState } from '../session.js';
import type { StoreContext } from '../store.js';
import type { StoreScriptName } from './scripts.js';
import type { StateCopies } from './state-copies.js';
import type { Retries } from './retries.js';
import type { NodeLease } from './node-lease.js';

/** What a store script answers: arrays of strings (or Buffers, for the Buffer variants) and numbers. */
export type Reply = (string | number | Buffer | null)[];

/** The store's scripts as ioredis defines them (`defineCommand` adds `name` and `nameBuffer`). */
export type StoreCommands = Redis & {
  [K in StoreScriptName]: (...args: (string | number | Buffer)[]) => Promise<Reply | string | number>;
} & {
  [K in StoreScriptName as `${K}Buffer`]: (...args: (string | number | Buffer)[]) => Promise<Reply>;
};

/** Settings of the Redis store, validated by `createRedisStore`. */
export interface RedisSettings {
  readonly prefix: string;
  readonly nodeLeaseMs: number;
  readonly graceMs: number;
  readonly sweepIntervalMs: number;
  readonly pollIntervalMs: number;
  readonly onStop: 'auto' | 'close' | 'keep';
  readonly stateCopyBytes: number;
  readonly maxStateBytes: number;
}

/** A process of this node running a request or a task, with the fencing token that lets it save. */
export interface LocalRun<Vars extends SessionVars> {
  readonly proc: WebProcess<Vars>;
  readonly token: string;
  readonly kind: 'request' | 'task';
  /** A request's: the state it started from, as Redis held it (empty for a process never saved). */
  readonly loaded?: Buffer;
  /** Its state was saved and its process freed before its end (a logout another node's close runs): its end saves nothing. */
  handedOver?: boolean;
}

/**
 * What this node knows of one session of the cluster: enough for the cookie, the sync reads and the
 * processes it runs. The truth is in Redis; this is refreshed by every request and dropped on close.
 */
export class SessionHandle<Vars extends SessionVars> implements ProcessOwner<Vars> {
  id: string;
  state: SessionState = 'open';
  readonly ip: string;
  readonly createdAtMs: number;
  lastRequestAtMs: number;
  /** The cookie lifetime in effect at that request (see `cookieExpiresAtMs` in session.ts). */
  cookieLifetimeMs: number;
  lastActivityAtMs: number;
  processCount: number;
  /** Made here and its first init not ended: a close before that is neither said nor counted here. */
  unborn = false;
  readonly runs = new Map<WebProcess<Vars>, LocalRun<Vars>>();
  /** The processes this node's close of the session rebuilt (its hooks and teardown run on them). */
  closing: Set<WebProcess<Vars>> | undefined;
  /**
   * Handles of this node re-keyed onto this one's id while their work still ran: a request with the new
   * id reached the node before it heard of a rename, so the id had a handle of its own already. Until
   * their work ends, what reaches this handle (a close, the count of running work) reaches them too.
   */
  readonly companions = new Set<SessionHandle<Vars>>();
  /** The handle whose companion this one is, while its work runs. */
  primary: SessionHandle<Vars> | undefined;
  readonly #node: NodeServices<Vars>;
  /** Set once a close of the session has started: work that starts in it later is asked to stop at once. */
  #closeStarted = false;
  /**
   * A regenerate this node asked for from a request of the session, until its reply is read: the
   * releases of the session's processes wait for it, so an un-awaited regenerate's caller is saved under
   * the new id (Redis forwards an old id's release only for work other than the caller's).
   */
  renaming: Promise<void> | undefined;
  /**
   * Process id → the new ids of renames its own request asked for, whose replies were lost and whose
   * outcome Redis never told (renames.ts), the latest last: its release names them, latest first, if
   * the old id names nothing (a retried regenerate may have made the first one, not the second).
   */
  unsureRenames: Map<string, string[]> | undefined; // made on first use: a lost reply is rare, handles are not

  constructor(node: NodeServices<Vars>, id: string, ip: string, createdAtMs: number, lastRequestAtMs: number, processCount: number) {
    this.#node = node;
    this.id = id;
    this.ip = ip;
    this.createdAtMs = createdAtMs;
    this.lastRequestAtMs = lastRequestAtMs;
    this.cookieLifetimeMs = node.ctx.options.inactiveSessionTimeoutMs;
    this.lastActivityAtMs = lastRequestAtMs;
    this.processCount = processCount;
  }

  get lockManager(): LockManager {
    return this.#node.runLocks;
  }

  spawn(name: string, task: (proc: WebProcess<Vars>) => Promise<void>): WebProcess<Vars> {
    return this.#node.spawn(this, name, task);
  }

  /** A request or task of this node starts in `run.proc`. */
  startRun(run: LocalRun<Vars>): void {
    this.runs.set(run.proc, run);
    this.#node.runningHere.set(run.proc, this);
    // An enter that landed in Redis before the close's claim, its reply read after the close started
    // here: the close waits for this request, so it must hear the close like the ones already running.
    if (this.#closeStarted) this.#askToStop(run.proc);
    // Its enter or spawn reply read after the close had finished ('x' heard): a straggler already.
    if (this.state === 'closed' || this.#node.closeFinished(this.id)) void this.#node.tearDown(run.proc);
  }

  giveBack(proc: WebProcess<Vars>, refs: LockRef[]): Promise<void> {
    return this.#node.giveBack(proc, refs);
  }

  outlived(proc: WebProcess<Vars>): boolean {
    return (this.state !== 'open' && !this.runs.has(proc) && this.closing?.has(proc) !== true) || this.#node.fencedRuns.has(proc);
  }

  /** It ended (or never got its context): its run, if it was running. */
  endRun(proc: WebProcess<Vars>): LocalRun<Vars> | undefined {
    const run = this.runs.get(proc);
    this.runs.delete(proc);
    this.#node.runningHere.delete(proc);
    return run;
  }

  /** The session started closing (here or on another node): the cookie clears, running work is asked to stop. */
  markClosing(): void {
    this.state = 'closing';
    this.#closeStarted = true;
    for (const proc of this.runs.keys()) this.#askToStop(proc);
    for (const companion of this.companions) companion.markClosing();
  }


  /**
   * The session's close has finished (close-ends.ts closeEnded: however this node learnt it). Work of
   * it still running here (a request or task the close stopped waiting for at closeTimeoutMs) is torn
   * down, as the memory store's close tears down its stragglers: vars reset, record locks released (any
   * taken after the close freed the session's), later lock calls refused with ERR_SESSION_CLOSED.
   */
  finished(): void {
    this.markClosing();
    this.state = 'closed';
    for (const proc of this.runs.keys()) if (!proc.closed) void this.#node.tearDown(proc);
    for (const companion of this.companions) companion.finished();
  }

  /** Aborts the process's signal: its session is closing (the error made only if someone reads it). */
  #askToStop(proc: WebProcess<Vars>): void {
    processInternals.abort(proc, () => new SessionError('ERR_SESSION_CLOSED', 'closing', { sessionId: this.id }));
  }

  /** No work of the session runs on this node (under this handle or a companion): the handle may go. */
  get idleHere(): boolean {
    return this.runs.size === 0 && this.companions.size === 0;
  }

  /** A close of the session has started (claimed here, or announced): it will not open again. */
  get closeStarted(): boolean {
    return this.#closeStarted;
  }

  /** The processes running on this node in the session: this handle's and its companions'. */
  processesHere(): WebProcess<Vars>[] {
    const procs = [...this.runs.keys()];
    for (const companion of this.companions) procs.push(...companion.runs.keys());
    return procs;
  }

  /** Its work is over: a companion leaves its primary. */
  leavePrimaryIfIdle(): void {
    if (this.primary === undefined || this.runs.size > 0) return;
    this.primary.companions.delete(this);
    this.primary = undefined;
  }
}

/** What the parts of the Redis store share on one node. */
export interface NodeServices<Vars extends SessionVars> {
  readonly ctx: StoreContext<Vars>;
  readonly redis: StoreCommands;
  readonly settings: RedisSettings;
  /** This node's id: written on the processes it runs and the closes it claims. */
  readonly nodeId: string;
  readonly lockManager: RedisLockManager;
  /** What this node's processes lock through: lockManager, with their runs' calls fenced (run-locks.ts). */
  readonly runLocks: LockManager;
  /** Delays between retries of saves and closes that failed on a Redis error. */
  readonly retries: Retries;
  /** Whether this node may have been taken for dead (no beat answered for a lease): node-lease.ts. */
  readonly lease: NodeLease;
  /**
   * The stop's drain has ended (all work done, or given up at closeTimeoutMs): the node leaves without
   * waiting for a request that would start now (its enter's reply or its init's end read late).
   */
  drainEnded: boolean;
  /** The process objects running a request or task on this node now, each with the handle it runs under (its run is in that handle's runs). */
  readonly runningHere: Map<WebProcess<Vars>, SessionHandle<Vars>>;
  /** Runs that were going on when this node learnt it had been taken for dead: their lock calls are refused (heartbeat.ts). */
  readonly fencedRuns: WeakSet<WebProcess<Vars>>;
  /**
   * Sessions made here whose first init never ended well (their request failed or was refused), the
   * latest NEVER_MADE_KEPT: a close of one this node runs later is neither said nor counted, even once
   * its handle has gone (a request refused while this node's claim of its close was on its way).
   */
  readonly neverMade: Set<string>;
  /** The states this node wrote last, by session: an enter that finds them exact brings no state. */
  readonly copies: StateCopies;
  /**
   * Set when a reply may have been lost (the connection was cut, a call failed): a process taken or a
   * close claimed by a script whose reply never came is repaired by the next sweeps (REPAIR).
   */
  readonly lostReplies: { due: boolean };
  /** The process ids this node runs work of, or has a write of on its way to Redis (REPAIR keeps them). */
  keptPids(): string[];
  spawn(handle: SessionHandle<Vars>, name: string, task: (proc: WebProcess<Vars>) => Promise<void>): WebProcess<Vars>;
  /** Tears a process down, its lock release retried (and tracked) until it lands or the node stops. */
  tearDown(proc: WebProcess<Vars>): Promise<void>;
  /** Gives back locks a torn-down process took meanwhile, retried (and tracked) until it lands or the node stops. */
  giveBack(proc: WebProcess<Vars>, refs: LockRef[]): Promise<void>;
  /** A logout whose close another node runs: ProcessSaves.handOver. */
  handOver(handle: SessionHandle<Vars>, proc: WebProcess<Vars>): boolean;
  /** Whether this node heard the close of `id` finish ('x', among the latest it remembers). */
  closeFinished(id: string): boolean;
  /** The close of `id` has ended, however this node learnt it: close-ends.ts closeEnded. */
  closeEnded(id: string): void;
  /**
   * Whether this node's close of `id` has stopped waiting for the session's processes (closer.ts): work
   * whose init ends from then on does not start, as on the memory store once its close is past the drain.
   */
  pastDrain(id: string): boolean;
}

/** How many ids of sessions never made a node remembers (a refused first request is rare: a few kB at most). */
const NEVER_MADE_KEPT = 1_024;

/** The session `id`, made on this node, was never made: its first request failed or was refused (see NodeServices.neverMade). */
export function rememberNeverMade(node: Pick<NodeServices<SessionVars>, 'neverMade'>, id: string): void {
  node.neverMade.add(id);
  if (node.neverMade.size > NEVER_MADE_KEPT) {
    const oldest = node.neverMade.values().next();
    if (oldest.done !== true) node.neverMade.delete(oldest.value);
  }
}

/** How long a session's keys live after its last write: the longer timeout plus the grace period. */
export function keyTtlMs(ctx: Pick<StoreContext<SessionVars>, 'options'>, settings: RedisSettings): number {
  return Math.max(ctx.options.inactiveSessionTimeoutMs, ctx.options.inactiveProcessTimeoutMs) + settings.graceMs;
}

/**
 * How little life a session key may have left before the sweep times its session out whatever the
 * nodes' clocks say (close-scripts.ts SWEEP): half the grace period, or two sweeps if that is longer,
 * but never more than the grace period (never before the timeout by Redis's clock).
 */
export function nearExpiryMs(settings: RedisSettings): number {
  return Math.min(settings.graceMs, Math.max(settings.graceMs / 2, 2 * settings.sweepIntervalMs));
}

/**
 * How long a waiting request stays counted among its session's waiters without trying again: a waiter
 * whose node died or gave up stops counting after it.
 */
export function waiterStaleMs(settings: RedisSettings): number {
  return Math.max(1_000, 8 * settings.pollIntervalMs);
}

/** A Redis failure as the engine reports it: 503 for the request, `'error'` for the operator. */
export function unavailable(error: unknown, sessionId?: string): SessionError {
  if (error instanceof SessionError) return error;
  return new SessionError('ERR_SESSION_STORE_UNAVAILABLE', (error as Error | undefined)?.message, { cause: error, sessionId });
}

export function text(value: string | number | Buffer | null | undefined): string {
  return value === null || value === undefined ? '' : typeof value === 'string' ? value : value.toString();
}

/** When the handle's cookie expires (see `cookieExpiresAtMs` in session.ts). */
export function handleCookieExpiresAtMs(handle: Pick<SessionHandle<SessionVars>, 'lastRequestAtMs' | 'cookieLifetimeMs'>, ctx: Pick<StoreContext<SessionVars>, 'options'>): number {
  return cookieExpiresAtMs(handle.lastRequestAtMs, handle.cookieLifetimeMs, ctx.options.inactiveSessionTimeoutMs);
}
