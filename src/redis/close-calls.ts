import type { WebProcess, SessionVars } from '../process.js';
import type { CloseReason } from '../session.js';
import { keyTtlMs, text, unavailable, type NodeServices, type SessionHandle } from './node.js';
import type { Pipeline } from './close-pipeline.js';
import type { ClusterWaits } from './cluster-waits.js';

/** What a closeSession call needs of the closer it goes through (closer.ts). */
export interface CloseCallsDeps<Vars extends SessionVars> {
  readonly node: NodeServices<Vars>;
  readonly waits: ClusterWaits<Vars>;
  /** The closes this node runs, by session id. */
  readonly pipelines: ReadonlyMap<string, Pipeline<Vars>>;
  readonly localRun: (id: string) => SessionHandle<Vars> | undefined;
  /** This node learns that a session was regenerated (its work there moves to the new id). */
  readonly renamed: (oldId: string, newId: string) => void;
  /** Runs the pipeline of a close this node has claimed (RedisCloser.start). */
  readonly start: (id: string, reason: CloseReason, insider: WebProcess<Vars> | undefined) => Promise<void>;
}

/**
 * closeSession calls on the Redis store: a call's claim, or its wait for a close under way here or its
 * join of another node's, and what its caller is to that close. A caller inside the session it closes
 * (a logout, a stop() from its own request or task) is not waited for by the drain, nor does it wait on
 * itself; one whose request ended while its claim was on its way is torn down after the close, as on the
 * memory store. RedisCloser runs the closes themselves.
 */
export class CloseCalls<Vars extends SessionVars> {
  readonly #node: NodeServices<Vars>;
  readonly #waits: ClusterWaits<Vars>;
  readonly #pipelines: ReadonlyMap<string, Pipeline<Vars>>;
  readonly #localRun: (id: string) => SessionHandle<Vars> | undefined;
  readonly #renamed: (oldId: string, newId: string) => void;
  readonly #start: CloseCallsDeps<Vars>['start'];

  /** Joins of other nodes' closes still waiting: a stop waits for them (bounded), its clients still up. */
  readonly #joins = new Map<Promise<void>, string>();

  constructor(deps: CloseCallsDeps<Vars>) {
    this.#node = deps.node;
    this.#waits = deps.waits;
    this.#pipelines = deps.pipelines;
    this.#localRun = deps.localRun;
    this.#renamed = deps.renamed;
    this.#start = deps.start;
  }

  /** closeSession(id) from `caller` (undefined: from outside any run): resolves true once closed, false for an unknown id. */
  async close(id: string, caller: WebProcess<Vars> | undefined, fromHook: boolean): Promise<boolean> {
    const local = this.#pipelines.get(id);
    const fromOwnSession = caller !== undefined && caller.sessionId === id;
    // From a hook of another session about a session closing already: true without waiting, as on the
    // memory store (no cycle of hooks awaiting each other's close).
    const fromOtherSessionsHook = fromHook && !fromOwnSession;
    if (local !== undefined) return fromOtherSessionsHook ? true : this.#waitLocal(id, local, caller, fromOwnSession);
    const { redis, settings, nodeId, ctx } = this.#node;
    // The id is dead for this node's readers from the call on, as with the memory store; the claim
    // decides, and a failed claim gives the session back.
    const handle = this.#localRun(id);
    // Decided at the call: a request that ends during the claim's round trip is then waited for (RedisCloser.start).
    const insider = fromOwnSession && this.runsHere(caller) ? caller : undefined;
    const wasOpen = handle?.state === 'open';
    if (wasOpen) handle!.state = 'closing';
    let outcome: string;
    // A stop waits for the claim too: its reply may start a join or a close after the stop looked (settle).
    const claim = redis.lwsClaim(settings.prefix, id, 'closed', nodeId, ctx.clock.now(), insider?.processId ?? '', keyTtlMs(ctx, settings)) as Promise<unknown>;
    const claiming = claim.then(() => undefined, () => undefined);
    this.#joins.set(claiming, id);
    try {
      outcome = text(await claim as string);
    } catch (error) {
      this.#joins.delete(claiming);
      this.#reopen(handle, wasOpen);
      // The claim may have landed without its reply: the sweeps run such a close (REPAIR).
      this.#node.lostReplies.due = true;
      throw unavailable(error, id);
    }
    // The join (if any) is added in this same turn, before the stop's loop looks again.
    this.#joins.delete(claiming);
    if (outcome === 'unknown' || outcome.startsWith('moved ')) {
      // Not open under this id: closed (its announcement marks the handle, if it has not yet), or
      // regenerated before this node heard of it (Redis says 'moved' to a logout) or while the claim was
      // on its way. The claim changed nothing, so neither does the handle.
      if (outcome.startsWith('moved ')) this.#renamed(id, outcome.slice('moved '.length));
      this.#reopen(handle, wasOpen);
      // From inside, the caller's session lives on under its new id and the logout closes it there;
      // from outside, the old id names nothing (as on the memory store).
      if (fromOwnSession && handle !== undefined && handle.id !== id) return this.close(handle.id, caller, false);
      return false;
    }
    if (outcome === 'ok') {
      ctx.counters.closed.closed++;
      void this.#start(id, 'closed', insider);
      const pipeline = this.#pipelines.get(id);
      if (pipeline !== undefined) await Promise.race([pipeline.promise, pipeline.failed]);
      await this.#tearDownIfEnded(insider);
      return true;
    }
    if (fromOtherSessionsHook) return true;
    // Another node is closing it, waiting for this very request if the call comes from inside (4D runs
    // the close in the calling process): the request's state goes to that close now, and the call
    // returns once the close has ended, the caller torn down. A task's goes when the task ends.
    // 'closing' because this node's own claim (a sweep, another closeSession) landed just before: not
    // another node's close, waited for as a local one (no join a stop from its hook would wait on, no hand-over).
    // A logout whose request ended while the claim was on its way is no call from inside any more (nothing to
    // hand over nor to leave out of the drain): it waits as a call from outside does, its caller torn down after.
    const endedMeanwhile = insider !== undefined && !this.runsHere(insider);
    const mine = this.#pipelines.get(id);
    if (mine !== undefined) {
      const closed = await this.#waitLocal(id, mine, caller, fromOwnSession && !endedMeanwhile);
      await this.#tearDownIfEnded(insider);
      return closed;
    }
    if (fromOwnSession && !endedMeanwhile && (insider === undefined || handle === undefined || !this.#node.handOver(handle, insider))) return true;
    const joined = this.#waits.closedElsewhere(id);
    this.#joins.set(joined, id);
    await joined.finally(() => this.#joins.delete(joined));
    await this.#tearDownIfEnded(insider);
    return true;
  }

  /**
   * A logout whose request ended while its claim was on its way: the close waited for that request like
   * any other and hooked the state it saved, but tore down a copy of its process rebuilt from Redis (or,
   * run by another node, nothing here). The caller's own object goes on torn down too (vars reset, later
   * locks refused), as on the memory store, where the caller is the process itself.
   */
  async #tearDownIfEnded(insider: WebProcess<Vars> | undefined): Promise<void> {
    if (insider !== undefined && !insider.closed && !this.runsHere(insider)) await this.#node.tearDown(insider);
  }

  async #waitLocal(id: string, local: Pipeline<Vars>, caller: WebProcess<Vars> | undefined, fromOwnSession: boolean): Promise<boolean> {
    if (fromOwnSession) {
      // From its own hook or teardown the close is under way, and waiting on itself would deadlock.
      if (local.phase !== 'draining') return true;
      this.waitsInside(id, local, caller!);
    }
    await Promise.race([local.promise, local.failed]);
    return true;
  }

  /** `caller`, running here, waits for its own session's close from inside (a logout, a stop()): the drain does not wait for it. */
  waitsInside(id: string, pipeline: Pipeline<Vars>, caller: WebProcess<Vars>): void {
    if (pipeline.phase !== 'draining' || !this.runsHere(caller)) return;
    pipeline.insiders.set(caller.processId, caller);
    this.#waits.released(id);
  }

  /** A further stop() caller: if this node runs its session's close, the close does not wait for it. */
  stopCalledInside(caller: WebProcess<Vars>): void {
    const pipeline = this.#pipelines.get(caller.sessionId);
    if (pipeline !== undefined) this.waitsInside(caller.sessionId, pipeline, caller);
  }

  /** A claim that did not happen gives the handle back its state, unless a close started meanwhile ('c' heard). */
  #reopen(handle: SessionHandle<Vars> | undefined, wasOpen: boolean): void {
    if (wasOpen && handle !== undefined && handle.state === 'closing' && !handle.closeStarted) handle.state = 'open';
  }

  /**
   * Whether `caller` is the process object running a request or task of the session on this node now. A
   * callback that outlived its request (a timer, a promise chain) still carries that request's object,
   * an old copy of the process: such a call closes the session as if from outside (the pipeline waits
   * for whoever runs the process, and hooks the state saved last).
   */
  runsHere(caller: WebProcess<Vars>): boolean {
    return this.#node.runningHere.has(caller);
  }

  /** This node's closeSession calls with a claim on its way or joining another node's close, but those of `exceptSession`: a stop waits for them. */
  joinsWaited(exceptSession?: string): Promise<void>[] {
    return [...this.#joins].filter(([, id]) => id !== exceptSession).map(([p]) => p);
  }
}
