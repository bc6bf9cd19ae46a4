import { realTimer } from '../clock.js';
import { SessionError } from '../errors.js';
import type { WebProcess, SessionVars } from '../process.js';
import type { CloseReason } from '../session.js';
import { keyTtlMs, text, unavailable, type NodeServices, type Reply, type SessionHandle } from './node.js';
import { ClosePipelineSteps, type Pipeline } from './close-pipeline.js';
import { ClusterWaits } from './cluster-waits.js';
import { CloseCalls } from './close-calls.js';
import { CloseWaits, type CloseBlockers } from '../close-waits.js';
import type { ProcessRun } from '../runs.js';
import { RedisSweep, SWEEP_BATCH, type SweepGauges } from './sweep.js';

/**
 * Closes on the Redis store: claims them (closeSession from any node, joined when one is under way, and
 * its caller's part in the close: close-calls.ts), runs the pipeline of each close this node claimed
 * (close-pipeline.ts), starting it over from what Redis holds after a Redis error, and waits for them at
 * stop. Closes come from closeSession, evictions, the sweep (sweep.ts: timeouts, dead nodes' closes) and
 * a cluster shutdown.
 */
export class RedisCloser<Vars extends SessionVars> {
  readonly #node: NodeServices<Vars>;
  readonly #pipelines = new Map<string, Pipeline<Vars>>();
  /** Waits on other nodes: releases (pub/sub 'r') and closes they finish ('x'). */
  readonly waits: ClusterWaits<Vars>;
  readonly #localRun: (id: string) => SessionHandle<Vars> | undefined;
  /** closeSession calls: their claims, joins of other nodes' closes, callers inside their own session (close-calls.ts). */
  readonly #calls: CloseCalls<Vars>;
  readonly #sweep: RedisSweep<Vars>;
  readonly #steps: ClosePipelineSteps<Vars>;
  /** Runs of this node awaiting closes: a cycle among them and this node's closes is broken (close-waits.ts). */
  readonly #closeWaits = new CloseWaits<Vars>((id) => this.#blockersOf(id));

  constructor(node: NodeServices<Vars>, localHandle: (id: string) => SessionHandle<Vars> | undefined, renamed: (oldId: string, newId: string) => void) {
    this.#node = node;
    this.waits = new ClusterWaits(node);
    this.#localRun = localHandle;
    this.#calls = new CloseCalls({
      node, waits: this.waits, pipelines: this.#pipelines, localRun: localHandle, renamed,
      start: (id, reason, insider) => this.start(id, reason, insider),
    });
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
    return this.#closeWaits.watch(this.#calls.close(id, run?.proc, run?.hook === true), run, id);
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

  /** A further stop() caller: if this node runs its session's close, the close does not wait for it. */
  stopCalledInside(caller: WebProcess<Vars>): void {
    this.#calls.stopCalledInside(caller);
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
      if (insider !== undefined) this.#calls.waitsInside(id, existing, insider);
      return existing.promise;
    }
    let failedWith!: (error: SessionError) => void;
    const failed = new Promise<never>((_resolve, reject) => { failedWith = reject; });
    failed.catch(() => {}); // nobody may be waiting for it
    const handle = this.#localRun(id);
    // Checked again now (the claim took a round trip): a request that ended meanwhile is waited for like any other.
    const running = insider !== undefined && this.#calls.runsHere(insider) ? insider : undefined;
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
    const claim = async (mode: 0 | 1 | 2): Promise<{ claimed: string[]; scanned: number; pending: number }> => {
      const reply = (await redis.lwsClaimAll(settings.prefix, nodeId, ctx.clock.now(), SWEEP_BATCH, keyTtlMs(ctx, settings), mode, settings.nodeLeaseMs) as Reply).map(text);
      const scanned = Number(reply.pop());
      const pending = Number(reply.pop());
      const bar = reply.indexOf('|');
      // Closes a dead node had claimed (killed within the stop's wait for its lease): run here, reason as
      // claimed, not counted again (as the sweep's takeovers).
      for (const id of reply.slice(bar + 1)) void this.start(id, undefined);
      return { claimed: reply.slice(0, bar), scanned, pending };
    };
    let pending = 0;
    for (let first = true; ; first = false) {
      const batch = await claim(first ? 1 : 0);
      if (first) pending = batch.pending;
      for (const id of batch.claimed) {
        ctx.counters.closed.shutdown++;
        void this.start(id, 'shutdown', insiders.get(id));
      }
      // A short batch may be short of claims only (leftovers dropped): the last batch is the one that found fewer ids.
      if (!(batch.scanned >= SWEEP_BATCH)) break;
    }
    // Nodes whose lease key has just gone (killed right before this stop, or stalled): dead once it has
    // been missing a lease, as a sweep decides (a node stalled that briefly is alive, its requests still
    // running and saving); asked again until then, or until they beat again. Bounded in real time.
    const giveUpAtMs = performance.now() + 2 * settings.nodeLeaseMs + settings.pollIntervalMs;
    // A failure (Redis away) ends the wait, not the stop: the closes claimed above are still awaited.
    while (pending > 0 && performance.now() < giveUpAtMs) {
      await new Promise<void>((resolve) => realTimer(resolve, Math.max(1, Math.min(settings.pollIntervalMs, settings.nodeLeaseMs))));
      try {
        pending = (await claim(2)).pending;
      } catch (error) {
        ctx.report(unavailable(error), 'storeErrors');
        return;
      }
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
      const joins = this.#calls.joinsWaited(skip === undefined ? undefined : caller!.sessionId);
      const waiting = [...joins, ...[...this.#pipelines.values()].filter((p) => p !== skip).map((p) => p.promise)];
      if (waiting.length === 0) return;
      await Promise.allSettled(waiting);
    }
  }

  stop(): void {
    this.#sweep.stop();
  }
}
