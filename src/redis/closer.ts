import { runHook, TIMED_OUT, within } from '../close.js';
import { SessionError } from '../errors.js';
import { processInternals, WebProcess, type SessionVars } from '../process.js';
import type { CloseReason, ClosePhase } from '../session.js';
import type { CloseEvent } from '../types.js';
import { SessionHandle, text, unavailable, type NodeServices, type Reply } from './node.js';
import { ClusterWaits } from './cluster-waits.js';
import { RedisSweep, SWEEP_BATCH, type SweepGauges } from './sweep.js';
import { restoreProcess } from './state.js';

interface Pipeline<Vars extends SessionVars> {
  readonly promise: Promise<void>;
  /** Rejects at the pipeline's first Redis error: closeSession callers learn it then (the close goes on retrying). */
  readonly failed: Promise<never>;
  failedWith?: (error: SessionError) => void;
  phase: ClosePhase;
  /**
   * Processes of this node that called closeSession on their own session while running it, by process
   * id: the drain does not wait for them, and their hooks see these very objects (as their request left
   * them, even if it ended after the pipeline started and its save is still on its way to Redis).
   */
  readonly insiders: Map<string, WebProcess<Vars>>;
}

/**
 * The close pipeline of the Redis store, on the node that claimed the close: wait for the session's
 * processes to be released wherever they run (bounded by `closeTimeoutMs`), run `onClose` once per
 * process with its saved state (marking each in Redis so a node that takes a dead claimer's close
 * over skips it), release its locks, delete the session. Closes come from closeSession, evictions, the
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

  constructor(node: NodeServices<Vars>, localHandle: (id: string) => SessionHandle<Vars> | undefined, renamed: (oldId: string, newId: string) => void) {
    this.#node = node;
    this.#renamed = renamed;
    this.waits = new ClusterWaits(node);
    this.#localRun = localHandle;
    this.#sweep = new RedisSweep(node, (id, reason) => void this.start(id, reason));
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

  /** Whether this node runs the close of `id` now. */
  isClosing(id: string): boolean {
    return this.#pipelines.has(id);
  }

  /** closeSession(id): claims the close (or joins the one under way); resolves true once closed, false for an unknown id. */
  async closeSession(id: string, caller: WebProcess<Vars> | undefined): Promise<boolean> {
    const local = this.#pipelines.get(id);
    const fromOwnSession = caller !== undefined && caller.sessionId === id;
    if (local !== undefined) {
      if (fromOwnSession) {
        // From its own hook or teardown the close is under way, and waiting on itself would deadlock.
        if (local.phase !== 'draining') return true;
        if (this.#runsHere(caller)) {
          local.insiders.set(caller.processId, caller);
          this.waits.released(id);
        }
      }
      await Promise.race([local.promise, local.failed]);
      return true;
    }
    const { redis, settings, nodeId, ctx } = this.#node;
    // The id is dead for this node's readers from the call on, as with the memory store; the claim
    // decides, and a failed claim gives the session back.
    const handle = this.#localRun(id);
    // Decided at the call: a request that ends during the claim's round trip is then waited for (start()).
    const insider = fromOwnSession && this.#runsHere(caller) ? caller : undefined;
    const wasOpen = handle?.state === 'open';
    if (wasOpen) handle!.state = 'closing';
    let outcome: string;
    try {
      outcome = text(await redis.lwsClaim(settings.prefix, id, 'closed', nodeId, ctx.clock.now(), insider?.processId ?? '') as string);
    } catch (error) {
      if (wasOpen) handle!.state = 'open';
      throw unavailable(error, id);
    }
    if (outcome === 'unknown' || outcome.startsWith('moved ')) {
      // Regenerated before this node heard of it (Redis says so to a logout), or while the claim was
      // on its way: the session lives on under its new id, and the close goes on there.
      if (outcome.startsWith('moved ')) this.#renamed(id, outcome.slice('moved '.length));
      if (handle !== undefined && handle.id !== id) {
        if (wasOpen && handle.state === 'closing') handle.state = 'open';
        return this.closeSession(handle.id, caller);
      }
      return false; // gone for good: the handle stays closing (its responses clear the cookie)
    }
    if (outcome === 'ok') {
      ctx.counters.closed.closed++;
      void this.start(id, 'closed', insider);
      const pipeline = this.#pipelines.get(id);
      if (pipeline !== undefined) await Promise.race([pipeline.promise, pipeline.failed]);
      return true;
    }
    // Another node is closing it. From inside the session, that node waits for this very request:
    // the close is under way and will see this request's state once it returns.
    if (fromOwnSession) return true;
    await this.waits.closedElsewhere(id);
    return true;
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
  start(id: string, reason: CloseReason | undefined, insider?: WebProcess<Vars>): Promise<void> {
    const existing = this.#pipelines.get(id);
    if (existing !== undefined) return existing.promise;
    let failedWith!: (error: SessionError) => void;
    const failed = new Promise<never>((_resolve, reject) => { failedWith = reject; });
    failed.catch(() => {}); // nobody may be waiting for it
    const handle = this.#localRun(id);
    // Checked again now (the claim took a round trip): a request that ended meanwhile is waited for like any other.
    const running = insider !== undefined && this.#runsHere(insider) ? insider : undefined;
    const pipeline: Pipeline<Vars> = { promise: Promise.resolve(), failed, failedWith, phase: 'draining', insiders: new Map(running === undefined ? [] : [[running.processId, running]]) };
    handle?.markClosing();
    (pipeline as { promise: Promise<void> }).promise = this.#runUntilDone(id, reason, pipeline).finally(() => this.#pipelines.delete(id));
    this.#pipelines.set(id, pipeline);
    return pipeline.promise;
  }

  /**
   * A claimed close must end, or stay claimed by nobody alive: on a Redis error the pipeline starts over
   * from what Redis holds (hooks already marked done are skipped) until it ends or this node stops.
   */
  async #runUntilDone(id: string, reason: CloseReason | undefined, pipeline: Pipeline<Vars>): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#run(id, reason, pipeline);
      } catch (error) {
        const failure = unavailable(error, id);
        if (attempt === 0) {
          this.#node.ctx.report(failure, 'storeErrors');
          pipeline.failedWith?.(failure);
        }
        if (this.#node.retries.stopped) return;
        pipeline.phase = 'draining';
        await this.#node.retries.wait(attempt);
      }
    }
  }

  async #run(id: string, claimedReason: CloseReason | undefined, pipeline: Pipeline<Vars>): Promise<void> {
    const { ctx, redis, settings, nodeId } = this.#node;
    const startedAtMs = ctx.clock.now();
    // 2. Wait until no process of the session runs anywhere (the insiders excepted), bounded.
    let loaded = await this.#load(id);
    if (loaded === undefined) return;
    if (loaded.processes.some((p) => p.busy && !pipeline.insiders.has(p.pid))) {
      // Insiders excepted: they run the very call that waits.
      const drained = this.waits.drained(id, async () => {
        const now = await this.#load(id);
        return now === undefined || !now.processes.some((p) => p.busy && !pipeline.insiders.has(p.pid));
      });
      if (await within(ctx.clock, ctx.options.closeTimeoutMs, drained.promise) === TIMED_OUT) {
        ctx.report(new SessionError('ERR_SESSION_DRAIN_TIMEOUT', `process(es) still running after ${ctx.options.closeTimeoutMs} ms`, { sessionId: id }), 'drainTimeouts');
      }
      drained.cancel();
      loaded = await this.#load(id);
      if (loaded === undefined) return;
    }
    // 3. One hook per process, with the state its last request saved (or the live one of an insider).
    pipeline.phase = 'hooks';
    const reason = claimedReason ?? loaded.reason;
    const hook = ctx.options.mode === 'legacy' ? ctx.onClose : undefined;
    const handle = this.#localRun(id);
    const closeCtx = {
      clock: ctx.clock,
      als: ctx.als,
      closeTimeoutMs: () => ctx.options.closeTimeoutMs,
      report: (error: SessionError, kind: 'hook' | 'hookTimeout' | 'drainTimeout') =>
        ctx.report(error, kind === 'hook' ? 'hookErrors' : kind === 'hookTimeout' ? 'hookTimeouts' : 'drainTimeouts'),
    };
    const owner = handle ?? new SessionHandle<Vars>(this.#node, id, '', startedAtMs, startedAtMs, loaded.processes.length);
    owner.state = 'closing';
    const processes: WebProcess<Vars>[] = [];
    /** Processes whose saved state cannot be read: no hook (it would not see their context), locks released by process id. */
    const unreadable: WebProcess<Vars>[] = [];
    let hooksRun = 0;
    let hookFailures = 0;
    for (const saved of loaded.processes) {
      const live = pipeline.insiders.get(saved.pid);
      const proc = live ?? new WebProcess<Vars>(owner, saved.kind, {} as Vars, saved.pid);
      let readable = true;
      if (live === undefined) {
        try {
          restoreProcess(proc, saved.state);
        } catch (error) {
          // Retrying would read the same bytes, and waiting for a node that might read them would hold the
          // close (and every lock of the session) for as long as this node lives: the close goes on without
          // this process's hook, said on 'error' when the hook was due, and its locks go by process id.
          readable = false;
          unreadable.push(proc);
          if (!saved.hooked && hook !== undefined) ctx.report(error as SessionError, 'hookErrors');
        }
      }
      processes.push(proc);
      if (saved.hooked || hook === undefined) continue;
      hooksRun++;
      if (!readable || !(await runHook(closeCtx, hook, proc, reason))) hookFailures++;
      if (Number(await redis.lwsHooked(settings.prefix, id, saved.pid, nodeId)) !== 1) return; // taken over meanwhile
    }
    // 4. Teardown: selections cleared, vars reset, every lock released cluster-wide.
    pipeline.phase = 'teardown';
    for (const proc of processes) await processInternals.teardown(proc, {});
    // Their list of held locks was in the state that could not be read; Redis knows them by process.
    for (const proc of unreadable) await this.#node.lockManager.releaseAll({ sessionId: id, processId: proc.processId }, []);
    if (Number(await redis.lwsFinish(settings.prefix, id, nodeId)) !== 1) return;
    pipeline.phase = 'done';
    this.waits.finishedElsewhere(id);
    const event: CloseEvent = { sessionId: id, reason, processCount: processes.length, hooksRun, hookFailures, durationMs: ctx.clock.now() - startedAtMs };
    ctx.closed(event);
  }

  async #load(id: string): Promise<LoadedClose | undefined> {
    const { redis, settings, nodeId } = this.#node;
    const reply = await redis.lwsLoadClosingBuffer(settings.prefix, id, nodeId);
    if (text(reply[0]) !== 'ok') return undefined;
    const processes: LoadedClose['processes'] = [];
    for (let i = 2; i + 3 < reply.length; i += 4) {
      const pid = text(reply[i]);
      processes.push({ pid, busy: text(reply[i + 1]) !== '0', hooked: text(reply[i + 2]) === '1', state: toBuffer(reply[i + 3]), kind: pid.startsWith('t') ? 'task' : 'web' });
    }
    return { reason: text(reply[1]) as CloseReason, processes };
  }

  /** Cluster shutdown: claims every open session with 'shutdown' and waits for every close of this node. */
  /** `insiders`: session id → the process of this node whose stop() call closes it (its own session). */
  async closeAll(insiders: ReadonlyMap<string, WebProcess<Vars>>, caller?: WebProcess<Vars>): Promise<void> {
    const { ctx, redis, settings, nodeId } = this.#node;
    for (;;) {
      const ids = (await redis.lwsClaimAll(settings.prefix, nodeId, ctx.clock.now(), SWEEP_BATCH) as Reply).map(text);
      const scanned = Number(ids.pop());
      for (const id of ids) {
        ctx.counters.closed.shutdown++;
        void this.start(id, 'shutdown', insiders.get(id));
      }
      // A short batch may be short of claims only (leftovers dropped): the last batch is the one that found fewer ids.
      if (!(scanned >= SWEEP_BATCH)) break;
    }
    await this.settle(caller);
  }

  /** Waits for every close this node runs, except the one whose hook or teardown is the caller (stop() from a hook). */
  async settle(caller?: WebProcess<Vars>): Promise<void> {
    const own = caller === undefined ? undefined : this.#pipelines.get(caller.sessionId);
    const skip = own !== undefined && own.phase !== 'draining' ? own : undefined;
    for (;;) {
      const waiting = [...this.#pipelines.values()].filter((p) => p !== skip);
      if (waiting.length === 0) return;
      await Promise.all(waiting.map((p) => p.promise));
    }
  }

  stop(): void {
    this.#sweep.stop();
  }
}

interface LoadedClose {
  readonly reason: CloseReason;
  readonly processes: { pid: string; busy: boolean; hooked: boolean; state: Buffer; kind: string }[];
}

function toBuffer(value: string | number | Buffer | null | undefined): Buffer {
  return Buffer.isBuffer(value) ? value : Buffer.from(value === null || value === undefined ? '' : String(value));
}
