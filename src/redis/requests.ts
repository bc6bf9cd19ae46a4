import { SessionError } from '../errors.js';
import { releaseDeadlines, RequestLease, type LeaseHost } from '../lease.js';
import type { MaybePromise } from '../maybe-async.js';
import { WebProcess, type SessionVars } from '../process.js';
import { tearDown, type RequestIdentity, type StoreContext } from '../store.js';
import type { RedisCloser } from './closer.js';
import { handleCookieExpiresAtMs, SessionHandle, unavailable, type NodeServices } from './node.js';
import type { ProcessSaves } from './processes.js';
import type { SessionRenames } from './renames.js';
import { restoreProcess } from './state.js';
import { SessionEntry } from './entry.js';
import { CreatePath } from './create-path.js';
import { handedOverEnded } from './close-ends.js';
import { initRequestProcess } from './request-init.js';
import { shapedSessionId } from '../session-id.js';
import type { TurnQueues } from './turns.js';

type Lease<Vars extends SessionVars> = RequestLease<Vars, SessionHandle<Vars>>;

/** What the node's store shares with its request path. */
export interface RequestPathDeps<Vars extends SessionVars> {
  readonly node: NodeServices<Vars>;
  /** Sessions this node has served, by id (the store drops them when a close is announced). */
  readonly known: Map<string, SessionHandle<Vars>>;
  /** Sessions regenerated lately: a reply naming an old id is about the session under its new one. */
  readonly renames: Pick<SessionRenames<Vars>, 'current'>;
  readonly turns: TurnQueues;
  readonly processes: ProcessSaves<Vars>;
  readonly closer: RedisCloser<Vars>;
  /** 'none'-mode requests running here. */
  readonly transients: Set<WebProcess<Vars>>;
  /** True once the node stops taking work. */
  refusing(): boolean;
  /**
   * Resolves once the store has started (connected, subscribed, options read); undefined once it has, so
   * a request does not wait a turn of the microtask queue (and, on Node 20, its async hooks) for nothing.
   */
  started(): Promise<void> | undefined;
  /** A request or a tracked write ended: a stopping node checks whether it is idle. */
  checkIdle(): void;
}

/**
 * A request's way into a process of its session and out again, on the Redis store: one script to enter
 * (SessionEntry, with FIFO waiting on this node when the process is busy) or to create a session,
 * evicting at the global cap (CreatePath); the state restored into a process rebuilt here; and one script
 * after the response to save and free it (ProcessSaves).
 */
export class RedisRequestPath<Vars extends SessionVars> {
  readonly #deps: RequestPathDeps<Vars>;
  readonly #ctx: StoreContext<Vars>;
  readonly #node: NodeServices<Vars>;
  readonly #known: Map<string, SessionHandle<Vars>>;
  readonly #processes: ProcessSaves<Vars>;
  readonly #closer: RedisCloser<Vars>;
  readonly #transients: Set<WebProcess<Vars>>;
  readonly #leaseHost: LeaseHost<Vars, SessionHandle<Vars>>;
  /** New sessions, and 'none' mode's throw-away processes (create-path.ts). */
  readonly #creates: CreatePath<Vars>;
  readonly #entry: SessionEntry<Vars>;
  #acquiring = 0;
  /** Processes whose init runs inside an acquire: counted there (acquiringCount), not as running work too. */
  readonly #initializing = new Set<WebProcess<Vars>>();

  constructor(deps: RequestPathDeps<Vars>) {
    this.#deps = deps;
    this.#node = deps.node;
    this.#ctx = deps.node.ctx;
    this.#known = deps.known;
    this.#processes = deps.processes;
    this.#closer = deps.closer;
    this.#transients = deps.transients;
    const ctx = this.#ctx;
    this.#entry = new SessionEntry<Vars>({
      node: deps.node,
      turns: deps.turns,
      refusing: () => deps.refusing(),
      reject: (cause, error) => this.#reject(cause, error),
      admit: (id, ip, entered, nowMs) => {
        const handle = this.#handle(id, ip, entered.createdAtMs, nowMs, entered.processCount);
        return this.#lease(handle, entered.pid, entered.token, entered.state, false);
      },
      create: (ip) => this.#creates.create(ip),
    });
    this.#leaseHost = {
      als: ctx.als,
      release: (lease) => this.#release(lease),
      reportHandlerError: ctx.reportHandlerError,
      cookieExpiresAtMs: (handle) => handleCookieExpiresAtMs(handle, ctx),
      ...releaseDeadlines(ctx),
    };
    this.#creates = new CreatePath<Vars>({
      node: deps.node, closer: deps.closer, processes: deps.processes, transients: deps.transients, leaseHost: this.#leaseHost,
      refusing: () => deps.refusing(),
      reject: (cause, error) => this.#reject(cause, error),
      handle: (id, ip, createdAtMs, lastRequestAtMs, processCount) => this.#handle(id, ip, createdAtMs, lastRequestAtMs, processCount),
      lease: (handle, pid, token, state, isNew) => this.#lease(handle, pid, token, state, isNew),
    });
  }

  /** The node has stopped taking requests for good (see SessionEnters.stop). */
  stop(): void {
    this.#entry.stop();
  }

  /** Requests between their arrival and their lease (an enter or a create on its way, a wait): a stop waits for them too. */
  get acquiringCount(): number {
    return this.#acquiring;
  }

  /** Whether `proc` is a request's process whose init runs: its acquire counts it (acquiringCount). */
  initializing(proc: WebProcess<Vars>): boolean {
    return this.#initializing.has(proc);
  }

  /** See AttachedStore.acquire. */
  async acquire(request: RequestIdentity): Promise<RequestLease<Vars>> {
    const ctx = this.#ctx;
    if (this.#deps.refusing()) throw this.#reject('stopped', new SessionError('ERR_SESSION_STOPPED'));
    // An enter that left before a stop began is answered after it: its request then runs (and the stop
    // drains it) or is refused, but never starts after the node has left.
    this.#acquiring++;
    try {
      const starting = this.#deps.started();
      let identity: RequestIdentity = request;
      if (starting !== undefined) {
        await starting; // its failure is a 503, counted below
        // Read before the cluster's options applied here (the cookie's name, trustProxy): read again.
        if (request.reread !== undefined) identity = request.reread();
      }
      if (ctx.options.mode === 'none') return await this.#creates.transient();
      // Only an id's shape goes into a key name or a refusal's sessionId: the HTTP binding checks only the
      // length, and a client's 36 characters can hold CR LF, markup or NUL (then: no cookie, a new session).
      const sessionId = shapedSessionId(identity.sessionId);
      if (sessionId !== undefined) {
        const lease = await this.#entry.enter(sessionId, identity.ip, undefined, identity);
        if (lease !== undefined) return lease;
        this.#forgetStale(sessionId);
      }
      return await this.#creates.create(identity.ip);
    } catch (error) {
      if (error instanceof SessionError && error.code !== 'ERR_SESSION_STORE_UNAVAILABLE') throw error;
      // Its enter or create may have run in Redis without its reply coming back: the sweeps repair it.
      this.#node.lostReplies.due = true;
      throw this.#reject('storeUnavailable', unavailable(error, shapedSessionId(request.sessionId)));
    } finally {
      this.#acquiring--;
      this.#deps.checkIdle();
    }
  }

  /**
   * Redis knows the cookie's session no more (closed, expired, renamed), maybe with the message that said
   * so lost in a reconnect: this node's view of it goes, unless work of it still runs here. Else a node
   * that missed closes would list them for ever, and keep them in memory.
   */
  #forgetStale(id: string): void {
    const handle = this.#known.get(id);
    if (handle !== undefined && handle.id === id && handle.idleHere) this.#known.delete(id);
  }

  #handle(enteredId: string, ip: string, createdAtMs: number, lastRequestAtMs: number, processCount: number): SessionHandle<Vars> {
    // The enter may have run just before a rename this node has heard of since.
    const id = this.#deps.renames.current(enteredId);
    let handle = this.#known.get(id);
    // A handle marked closing (or finished, kept by 'x') that still runs work stays: the enter proves the session was open when it
    // landed, so the mark is a close of this node about to be claimed, and it covers this request too.
    // Replacing it would orphan that work (no abort reaches it, a logout in it would not be recognised).
    if (handle === undefined || !(handle.state === 'open' || handle.runs.size > 0)) {
      handle = new SessionHandle<Vars>(this.#node, id, ip, createdAtMs, lastRequestAtMs, processCount);
      this.#known.set(id, handle);
    }
    // The enter landed just before a close's claim, its reply read after this node claimed it or heard of
    // it: the close waits for this request, which must hear of it like the ones that were running.
    if (this.#closer.isClosing(id)) handle.markClosing();
    else if (this.#closer.waits.closeFinished(id)) handle.finished();
    handle.lastRequestAtMs = lastRequestAtMs;
    // As the enter had it (read when its call left; an option set within that round trip is the one exception).
    handle.cookieLifetimeMs = this.#ctx.options.inactiveSessionTimeoutMs;
    handle.processCount = processCount;
    return handle;
  }

  /** The request's lease on the process it entered: at once when the process has saved state, after `init` when it has none. */
  #lease(handle: SessionHandle<Vars>, pid: string, token: string, state: Buffer, isNew: boolean): MaybePromise<Lease<Vars>> {
    // Its enter's reply read after this node's stop ended its drain: the node leaves without waiting for
    // it, and Redis frees the process with the node's others (another node may take it): not started.
    if (this.#node.drainEnded) throw this.#reject('stopped', new SessionError('ERR_SESSION_STOPPED', 'the node stopped while the request entered', { sessionId: handle.id }));
    const proc = new WebProcess<Vars>(handle, 'web', {} as Vars, pid);
    const lease = new RequestLease<Vars, SessionHandle<Vars>>(this.#leaseHost, handle, proc, isNew);
    // `state` stays what Redis holds (the release compares with it; it may be this node's copy): nothing
    // restored shares its memory (restoreProcess gives typed arrays bytes of their own).
    let restored: boolean;
    try {
      restored = restoreProcess(proc, state);
    } catch (error) {
      // Unreadable: this request fails (its callers are async, so the throw rejects their promise) and the
      // operator hears of it; the process goes back free with its bytes untouched, never deleted: bytes a
      // newer Node wrote during a rolling upgrade look damaged to this one (V8 adds tags without a version
      // change), and a node of that version still reads them. Its locks live on with it.
      handle.endRun(proc);
      // Its release renews its locks with the session's key (process-scripts.ts RELEASE).
      this.#processes.save(handle, proc, token, undefined, 'stays');
      this.#ctx.report(error as SessionError, 'storeErrors');
      throw error;
    }
    // After the restore: a run of a finished session is torn down here, and nothing restored comes back over it.
    handle.startRun({ proc, token, kind: 'request', loaded: state });
    if (restored) return lease;
    this.#initializing.add(proc);
    return initRequestProcess({ node: this.#node, known: this.#known, processes: this.#processes }, handle, proc, token, lease, isNew)
      .finally(() => this.#initializing.delete(proc));
  }

  /** A request is over (its response ended): its process is saved and freed after the response. */
  #release(lease: Lease<Vars>): void {
    const { session: handle, proc } = lease;
    if (handle === undefined) {
      this.#transients.delete(proc);
      // Its locks are released; a release that fails is reported (a throw-away process: nothing retries).
      void tearDown(this.#ctx, proc);
      this.#deps.checkIdle();
      return;
    }
    const run = handle.endRun(proc);
    handle.lastActivityAtMs = this.#ctx.clock.now();
    if (run?.handedOver === true) handedOverEnded(this.#known, this.#closer.waits, this.#processes, handle, proc);
    if (run === undefined || run.handedOver === true) return this.#deps.checkIdle();
    this.#processes.save(handle, proc, run.token, proc.closed ? undefined : proc, 'stays', run.loaded);
  }

  #reject(cause: keyof StoreContext<Vars>['counters']['rejected'], error: SessionError): SessionError {
    this.#ctx.counters.rejected[cause]++;
    return error;
  }
}
