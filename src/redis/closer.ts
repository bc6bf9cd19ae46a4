import { SessionError } from '../errors.js';
import type { WebProcess, SessionVars } from '../process.js';
import type { CloseReason } from '../session.js';
import { keyTtlMs, text, unavailable, type NodeServices, type Reply, type SessionHandle } from './node.js';
import { ClosePipelineSteps, type Pipeline } from './close-pipeline.js';
import { ClusterWaits } from './cluster-waits.js';
import { CloseWaits, type CloseBlockers } from '../close-waits.js';
import type { ProcessRun } from '../runs.js';
import { RedisSweep, SWEEP_BATCH, type SweepGauges } from './sweep.js';

/**
 * Closes on the Redis store: claims them (closeSession from any node, joined when one is under way),
 * runs the pipeline of each close this node claimed (close-pipeline.ts), starting it over from what Redis
 * holds after a Redis error, and waits for them at stop. Closes come from closeSession, evictions, the
 * sweep (sweep.ts: timeouts, dead nodes' closes) and a cluster shutdown.
 */
export class RedisCloser<Vars extends SessionVars> {
  readonly #node: NodeServices<Vars>;
  readonly #pipelines = new Map<string, Pipeline<Vars>>();
  /** Waits on other nodes: releases (pub/sub 'r') and closes they finish ('x'). */
  readonly waits: ClusterWaits<Vars>;
  readonly #localRun: (id: string) => SessionHandle<Vars> | undefined;
  /** This node learns that a session was regenerated (its work there moves to the new id). */
  readonly #renamed: (oldId: string, newId: string) => void;
  readonly #sweep: RedisSweep<Vars>;
  readonly #steps: ClosePipelineSteps<Vars>;
  /** Runs of this node awaiting closes: a cycle among them and this node's closes is broken (close-waits.ts). */
  readonly #closeWaits = new CloseWaits<Vars>((id) => this.#blockersOf(id));

  constructor(node: NodeServices<Vars>, localHandle: (id: string) => SessionHandle<Vars> | undefined, renamed: (oldId: string, newId: string) => void) {
    this.#node = node;
    this.#renamed = renamed;
    this.waits = new ClusterWaits(node);
    this.#localRun = localHandle;
    this.#sweep = new RedisSweep(node, (id, reason, countAtEnd) => void this.start(id, reason, undefined, countAtEnd));
    this.#steps = new ClosePipelineSteps(node, this.waits, localHandle);
  }

  /** Cluster-wide counts as of the last sweep. */
  get gauges(): SweepGauges {
    return this.#sweep.gauges;
  }

  /** Arms the first sweep (the store has started). */
  armSweep(): void {
    this.#sweep.arm();
  }

  get activeCount(): number {
    return this.#pipelines.size;
  }

  /** Whether this node's close of `id` has stopped waiting for the session's processes (see Pipeline.drainOver). */
  pastDrain(id: string): boolean {
    return this.#pipelines.get(id)?.drainOver === true;
  }

  /** Whether a close of `id` has started: this node runs it, or one was announced and has not finished. */
  isClosing(id: string): boolean {
    return this.runsClose(id) || this.waits.closeUnderWay(id);
  }

  /** Whether this node runs the close of `id` (its pipeline): not a close another node announced. */
  runsClose(id: string): boolean {
    return this.#pipelines.has(id);
  }

  /** closeSession(id): claims the close (or joins the one under way); resolves true once closed, false for an unknown id. */
  closeSession(id: string, run: ProcessRun<Vars> | undefined): Promise<boolean> {
    return this.#closeWaits.watch(this.#close(id, run?.proc, run?.hook === true), run, id);
  }

  /**
   * What this node's close of `id` waits for on this node: the session's requests and tasks running
   * here (but a logout's caller), then the hook it runs. Another node's close, or its runs, are not seen.
   */
  #blockersOf(id: string): CloseBlockers<Vars> | undefined {
    const pipeline = this.#pipelines.get(id);
    if (pipeline?.phase === 'draining') {
      const processes: WebProcess<Vars>[] = [];
      for (const proc of this.#node.runningHere.keys()) if (proc.sessionId === id && !pipeline.insiders.has(proc.processId)) processes.push(proc);
      return { processes, hooks: false };
    }
    if (pipeline?.phase === 'hooks' && pipeline.hooking !== undefined) return { processes: [pipeline.hooking], hooks: true };
    return undefined;
  }

  async #close(id: string, caller: WebProcess<Vars> | undefined, fromHook: boolean): Promise<boolean> {
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
    // Decided at the call: a request that ends during the claim's round trip is then waited for (start()).
    const insider = fromOwnSession && this.#runsHere(caller) ? caller : undefined;
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
      if (fromOwnSession && handle !== undefined && handle.id !== id) return this.#close(handle.id, caller, false);
      return false;
    }
    if (outcome === 'ok') {
      ctx.counters.closed.closed++;
      void this.start(id, 'closed', insider);
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
    const endedMeanwhile = insider !== undefined && !this.#runsHere(insider);
    const mine = this.#pipelines.get(id);
    if (mine !== undefined) {
      const closed = await this.#waitLocal(id, mine, caller, fromOwnSession && !endedMeanwhile);
      await this.#tearDownIfEnded(insider);
      return closed;
    }
    if (fromOwnSession && !endedMeanwhile && (insider === undefined || handle === undefined || !this.#node.handOver(handle, insider))) return true;
    const joined = this.waits.closedElsewhere(id);
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
    if (insider !== undefined && !insider.closed && !this.#runsHere(insider)) await this.#node.tearDown(insider);
  }

  async #waitLocal(id: string, local: Pipeline<Vars>, caller: WebProcess<Vars> | undefined, fromOwnSession: boolean): Promise<boolean> {
    if (fromOwnSession) {
      // From its own hook or teardown the close is under way, and waiting on itself would deadlock.
      if (local.phase !== 'draining') return true;
      this.#waitsInside(id, local, caller!);
    }
    await Promise.race([local.promise, local.failed]);
    return true;
  }

  /** `caller`, running here, waits for its own session's close from inside (a logout, a stop()): the drain does not wait for it. */
  #waitsInside(id: string, pipeline: Pipeline<Vars>, caller: WebProcess<Vars>): void {
    if (pipeline.phase !== 'draining' || !this.#runsHere(caller)) return;
    pipeline.insiders.set(caller.processId, caller);
    this.waits.released(id);
  }

  /** A further stop() caller: if this node runs its session's close, the close does not wait for it. */
  stopCalledInside(caller: WebProcess<Vars>): void {
    const pipeline = this.#pipelines.get(caller.sessionId);
    if (pipeline !== undefined) this.#waitsInside(caller.sessionId, pipeline, caller);
  }

  /** Joins of other nodes' closes still waiting: a stop waits for them (bounded), its clients still up. */
  readonly #joins = new Map<Promise<void>, string>();

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
  #runsHere(caller: WebProcess<Vars>): boolean {
    return this.#node.runningHere.has(caller);
  }

  /**
   * Runs the pipeline for a close this node has claimed (eviction, timeout, closeSession, shutdown,
   * takeover). `insider`: the process of this node that asked for the close from inside the session,
   * if it still runs here: the drain does not wait for it and its hook sees that very object.
   */
  start(id: string, reason: CloseReason | undefined, insider?: WebProcess<Vars>, countAtEnd = false): Promise<void> {
    const existing = this.#pipelines.get(id);
    if (existing !== undefined) {
      // Started first by a sweep or a repair: a logout's caller still must not be waited for.
      if (insider !== undefined) this.#waitsInside(id, existing, insider);
      return existing.promise;
    }
    let failedWith!: (error: SessionError) => void;
    const failed = new Promise<never>((_resolve, reject) => { failedWith = reject; });
    failed.catch(() => {}); // nobody may be waiting for it
    const handle = this.#localRun(id);
    // Checked again now (the claim took a round trip): a request that ended meanwhile is waited for like any other.
    const running = insider !== undefined && this.#runsHere(insider) ? insider : undefined;
    const pipeline: Pipeline<Vars> = { promise: Promise.resolve(), countAtEnd, failed, failedWith, phase: 'draining', insiders: new Map(running === undefined ? [] : [[running.processId, running]]), hooked: new Map() };
    handle?.markClosing();
    (pipeline as { promise: Promise<void> }).promise = this.#runUntilDone(id, reason, pipeline).finally(() => this.#pipelines.delete(id));
    this.#pipelines.set(id, pipeline);
    this.#closeWaits.closeStarted(id);
    return pipeline.promise;
  }

  /**
   * A claimed close must end, or stay claimed by nobody alive: on a Redis error the pipeline starts over
   * from what Redis holds (hooks already marked done are skipped) until it ends or this node stops.
   */
  async #runUntilDone(id: string, reason: CloseReason | undefined, pipeline: Pipeline<Vars>): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#steps.run(id, reason, pipeline);
      } catch (error) {
        const failure = unavailable(error, id);
        if (attempt === 0) {
          this.#node.ctx.report(failure, 'storeErrors');
          pipeline.failedWith?.(failure);
        }
        if (this.#node.retries.stopped) return;
        // drainOver stays: work whose init ends from now on was given up on once (as on the memory store,
        // whose close never goes back to draining), so it is refused rather than run in the closing session.
        pipeline.phase = 'draining';
        await this.#node.retries.wait(attempt);
      }
    }
  }


  /**
   * Cluster shutdown: claims every open session with 'shutdown' and starts each close. `insiders`: session
   * id → the process of this node whose stop() call closes it (its own session), read as each close starts.
   */
  async claimAll(insiders: ReadonlyMap<string, WebProcess<Vars>>): Promise<void> {
    const { ctx, redis, settings, nodeId } = this.#node;
    for (;;) {
      const ids = (await redis.lwsClaimAll(settings.prefix, nodeId, ctx.clock.now(), SWEEP_BATCH, keyTtlMs(ctx, settings)) as Reply).map(text);
      const scanned = Number(ids.pop());
      for (const id of ids) {
        ctx.counters.closed.shutdown++;
        void this.start(id, 'shutdown', insiders.get(id));
      }
      // A short batch may be short of claims only (leftovers dropped): the last batch is the one that found fewer ids.
      if (!(scanned >= SWEEP_BATCH)) break;
    }
  }

  /**
   * Waits for every close this node runs, except the one whose hook or teardown is the caller (stop() from
   * a hook), and for its closeSession calls joining another node's close. Again until none is left: a
   * claim still on its way may turn into either (its reply read after this looked).
   */
  async settle(caller?: WebProcess<Vars>): Promise<void> {
    const own = caller === undefined ? undefined : this.#pipelines.get(caller.sessionId);
    const skip = own !== undefined && own.phase !== 'draining' ? own : undefined;
    for (;;) {
      // A join of the caller's own session waits for the close the caller is in (its 'x' comes at its end).
      const joins = [...this.#joins].filter(([, id]) => skip === undefined || id !== caller!.sessionId).map(([p]) => p);
      const waiting = [...joins, ...[...this.#pipelines.values()].filter((p) => p !== skip).map((p) => p.promise)];
      if (waiting.length === 0) return;
      await Promise.allSettled(waiting);
    }
  }

  stop(): void {
    this.#sweep.stop();
  }
}
