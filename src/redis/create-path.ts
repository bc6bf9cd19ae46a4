import { randomUUID } from 'node:crypto';
import { SessionError } from '../errors.js';
import { RequestLease, type LeaseHost } from '../lease.js';
import type { MaybePromise } from '../maybe-async.js';
import { WebProcess, type ProcessOwner, type SessionVars } from '../process.js';
import { initFailure, type StoreContext } from '../store.js';
import { newSessionId } from '../session-id.js';
import { transientOwner } from '../transients.js';
import type { RedisCloser } from './closer.js';
import { keyTtlMs, waiterStaleMs, rememberNeverMade, SessionHandle, text, type NodeServices, type RedisSettings, type Reply, type StoreCommands } from './node.js';
import type { ProcessSaves } from './processes.js';

type Lease<Vars extends SessionVars> = RequestLease<Vars, SessionHandle<Vars>>;

/** What the create path needs of the request path it serves (requests.ts). */
export interface CreatePathDeps<Vars extends SessionVars> {
  readonly node: NodeServices<Vars>;
  readonly closer: Pick<RedisCloser<Vars>, 'start'>;
  readonly processes: Pick<ProcessSaves<Vars>, 'initVars' | 'giveBack'>;
  /** 'none'-mode requests running here. */
  readonly transients: Set<WebProcess<Vars>>;
  readonly leaseHost: LeaseHost<Vars, SessionHandle<Vars>>;
  /** True once the node stops taking work. */
  refusing(): boolean;
  /** Counts a refused request under `cause`, and gives back its error. */
  reject(cause: keyof StoreContext<Vars>['counters']['rejected'], error: SessionError): SessionError;
  /** This node's handle of a session a script entered or made (RedisRequestPath #handle). */
  handle(id: string, ip: string, createdAtMs: number, lastRequestAtMs: number, processCount: number): SessionHandle<Vars>;
  /** The request's lease on the process it entered or made (RedisRequestPath #lease). */
  lease(handle: SessionHandle<Vars>, pid: string, token: string, state: Buffer, isNew: boolean): MaybePromise<Lease<Vars>>;
}

/**
 * What a request gets on the Redis store when it enters no session of its cookie's: a new session, made by
 * one script that evicts at the global cap, or in 'none' mode a throw-away process Redis never hears of.
 */
export class CreatePath<Vars extends SessionVars> {
  readonly #deps: CreatePathDeps<Vars>;
  readonly #ctx: StoreContext<Vars>;
  readonly #node: NodeServices<Vars>;
  readonly #redis: StoreCommands;
  readonly #settings: RedisSettings;
  readonly #transientOwner: ProcessOwner<Vars>;

  constructor(deps: CreatePathDeps<Vars>) {
    this.#deps = deps;
    this.#node = deps.node;
    this.#ctx = deps.node.ctx;
    this.#redis = deps.node.redis;
    this.#settings = deps.node.settings;
    this.#transientOwner = transientOwner(deps.node.lockManager, (proc, refs) => deps.processes.giveBack(proc, refs));
  }

  /** A new session (evicting the least recently active idle ones cluster-wide when the cap is reached). */
  async create(ip: string): Promise<Lease<Vars>> {
    // A request whose cookie named a closed session learns it after a stop began: no session is made
    // (a cluster stop has claimed every open one already, and this one would get no 'shutdown' close).
    if (this.#deps.refusing()) throw this.#deps.reject('stopped', new SessionError('ERR_SESSION_STOPPED'));
    const { options, clock, counters } = this.#ctx;
    // 'none' set while this request waited for a session that closed: no session is made for it.
    if (options.mode === 'none') return this.transient();
    const id = newSessionId();
    const nowMs = clock.now();
    const cap = Math.min(options.maxSessions, options.maxConcurrentProcesses), sentAtMs = performance.now();
    const reply = (await this.#redis.lwsCreate(this.#settings.prefix, id, ip, nowMs, cap, options.maxConcurrentProcesses, this.#node.nodeId, keyTtlMs(this.#ctx, this.#settings), options.inactiveSessionTimeoutMs, waiterStaleMs(this.#settings)) as Reply).map(text);
    const [outcome, second, ...rest] = reply;
    const victims = outcome === 'ok' ? rest : [second, ...rest].filter((v): v is string => v !== undefined);
    for (const victim of victims) {
      counters.closed.evicted++;
      // Not awaited: the newcomer never waits for another session's hook.
      void this.#deps.closer.start(victim, 'evicted');
    }
    if (outcome === 'limit') throw this.#deps.reject('sessionLimit', new SessionError('ERR_SESSION_LIMIT'));
    if (outcome !== 'ok' || second === undefined) throw this.#deps.reject('processLimit', new SessionError('ERR_SESSION_PROCESS_LIMIT'));
    // In doubt, the session may have been freed and timed out since: refused as a lost create (node-lease.ts).
    this.#node.lease.refuseIfInDoubt('create', sentAtMs);
    const handle = this.#deps.handle(id, ip, nowMs, nowMs, 1);
    // Never made until its first init has ended well (a close before that is not said): a failed or
    // refused init leaves it unborn for good, whatever the close still has to do.
    handle.unborn = true;
    let lease: Lease<Vars>;
    try {
      lease = await this.#deps.lease(handle, second, '1', Buffer.alloc(0), true);
    } catch (error) {
      // Remembered by id too: its handle may go before a close of it ends here (claimed meanwhile, its
      // reply lost and the close run by the repair).
      rememberNeverMade(this.#node, handle.id);
      throw error;
    }
    handle.unborn = false;
    // Counted once its process has a context: a session whose init failed was never made (see #initialized).
    // Under the id it has now (regenerated while init ran: the id its 'close' will name).
    counters.created++;
    this.#ctx.created({ sessionId: handle.id, ip });
    return lease;
  }

  /** A throw-away process for a 'none'-mode request: no session, nothing in Redis. */
  async transient(): Promise<Lease<Vars>> {
    // Bounded on each node by maxConcurrentProcesses, counted here rather than in Redis: a mode that keeps
    // nothing between requests makes no round trip for them (docs/redis.md, "'none' mode").
    const limit = this.#ctx.options.maxConcurrentProcesses;
    if (this.#deps.transients.size >= limit) {
      throw this.#deps.reject('processLimit', new SessionError('ERR_SESSION_PROCESS_LIMIT', `${this.#deps.transients.size} throw-away processes on this node, limit ${limit}`));
    }
    const proc = new WebProcess<Vars>(this.#transientOwner, 'web', {} as Vars, `t${randomUUID()}`);
    this.#deps.transients.add(proc);
    const lease = new RequestLease<Vars, SessionHandle<Vars>>(this.#deps.leaseHost, undefined, proc, true);
    try {
      proc.vars = await this.#deps.processes.initVars(proc);
    } catch (error) {
      lease.release();
      throw initFailure(this.#ctx, error);
    }
    return lease;
  }
}
