import { runHook, TIMED_OUT, within } from '../close.js';
import { SessionError } from '../errors.js';
import { processInternals, WebProcess, type SessionVars } from '../process.js';
import type { CloseReason, ClosePhase } from '../session.js';
import type { CloseEvent } from '../types.js';
import type { ClusterWaits } from './cluster-waits.js';
import { SessionHandle, text, type NodeServices } from './node.js';
import { readAfterLostReply } from './node-keys.js';
import { restoreProcess } from './state.js';

/** One close this node has claimed, while it runs (closer.ts keeps them by session id). */
export interface Pipeline<Vars extends SessionVars> {
  readonly promise: Promise<void>;
  /**
   * Counted in stats().closed when it ends, not where it was claimed: a claim of this node whose reply
   * was lost, run by the repair (a close taken over from another node was counted by that node).
   */
  readonly countAtEnd: boolean;
  /** Rejects at the pipeline's first Redis error: closeSession callers learn it then (the close goes on retrying). */
  readonly failed: Promise<never>;
  failedWith?: (error: SessionError) => void;
  phase: ClosePhase;
  /**
   * Its drain is over (it stopped waiting, at closeTimeoutMs or once drained), for good (a retry's drain too):
   * a request whose init ends from then on is refused (request-init.ts), as the memory store refuses one
   * past its close's drain, even before the hook loop reaches (and names in handle.closing) its process.
   */
  drainOver?: boolean;
  /**
   * Processes of this node that called closeSession on their own session while running it, by process
   * id: the drain does not wait for them, and their hooks see these very objects (as their request left
   * them, even if it ended after the pipeline started and its save is still on its way to Redis).
   */
  readonly insiders: Map<string, WebProcess<Vars>>;
  /**
   * The hooks this close ran on this node, by process id: whether each ended well. Kept across the
   * pipeline's retries: a hook whose mark in Redis failed (Redis away) is marked again, never run again.
   */
  readonly hooked: Map<string, boolean>;
  /** The process whose hook runs now (a run awaiting a close from it is what this close waits for). */
  hooking?: WebProcess<Vars> | undefined;
}

/**
 * Steps 2 to 4 of a close this node has claimed (the claim is step 1, closer.ts and close-calls.ts): wait
 * until the session's processes are released wherever they run (bounded by `closeTimeoutMs`), run
 * `onClose` once per process with its saved state (marking each in Redis, so a node that takes a dead
 * claimer's close over skips it), tear down and release its locks, delete the session. Each step that
 * writes checks that the claim is still this node's; a step that finds it lost stops there.
 */
export class ClosePipelineSteps<Vars extends SessionVars> {
  readonly #node: NodeServices<Vars>;
  readonly #waits: ClusterWaits<Vars>;
  readonly #localHandle: (id: string) => SessionHandle<Vars> | undefined;

  constructor(node: NodeServices<Vars>, waits: ClusterWaits<Vars>, localHandle: (id: string) => SessionHandle<Vars> | undefined) {
    this.#node = node;
    this.#waits = waits;
    this.#localHandle = localHandle;
  }

  /** Runs the steps once; a Redis error rejects (the closer starts over from what Redis holds). */
  async run(id: string, claimedReason: CloseReason | undefined, pipeline: Pipeline<Vars>): Promise<void> {
    const { ctx, redis, settings, nodeId } = this.#node;
    const startedAtMs = ctx.clock.now();
    // When the claim was last confirmed: the send time (performance.now()) of the last call whose reply
    // said it was still this node's (node-lease.ts judges a reply by its round trip too).
    let confirmedAtMs = performance.now();
    // 2. Wait until no process of the session runs anywhere (the insiders excepted), bounded.
    let loaded = await this.#load(id);
    if (loaded === undefined) return;
    if (loaded.processes.some((p) => p.busy && !pipeline.insiders.has(p.pid))) {
      // Insiders excepted: they run the very call that waits.
      const drained = this.#waits.drained(id, async () => {
        const now = await this.#load(id);
        return now === undefined || !now.processes.some((p) => p.busy && !pipeline.insiders.has(p.pid));
      });
      if (await within(ctx.clock, ctx.options.closeTimeoutMs, drained.promise) === TIMED_OUT) {
        ctx.report(new SessionError('ERR_SESSION_DRAIN_TIMEOUT', `process(es) still running after ${ctx.options.closeTimeoutMs} ms`, { sessionId: id }), 'drainTimeouts');
      }
      drained.cancel();
      pipeline.drainOver = true;
      confirmedAtMs = performance.now();
      loaded = await this.#load(id);
      if (loaded === undefined) return;
    }
    // 3. One hook per process, with the state its last request saved (or the live one of an insider).
    pipeline.phase = 'hooks';
    pipeline.drainOver = true;
    const reason = claimedReason ?? loaded.reason;
    // The mode in effect when the hooks are due decides (cluster-wide: options are shared).
    const hook = ctx.options.mode === 'legacy' ? ctx.onClose : undefined;
    const handle = this.#localHandle(id);
    const closeCtx = {
      clock: ctx.clock,
      als: ctx.als,
      closeTimeoutMs: () => ctx.options.closeTimeoutMs,
      report: ctx.report,
    };
    const owner = handle ?? new SessionHandle<Vars>(this.#node, id, '', startedAtMs, startedAtMs, loaded.processes.length);
    owner.state = 'closing';
    const processes: WebProcess<Vars>[] = [];
    /** Processes whose saved state cannot be read: no hook (it would not see their context), locks released by process id. */
    const unreadable: WebProcess<Vars>[] = [];
    for (const saved of loaded.processes) {
      // An insider, or a straggler the drain gave up on that runs on this node: hooked live and torn down
      // here, as the memory store does (its saved state is the one before its request began).
      const live = pipeline.insiders.get(saved.pid) ?? (saved.busy ? this.#runningHere(saved.pid) : undefined);
      const proc = live ?? new WebProcess<Vars>(owner, saved.name, {} as Vars, saved.pid);
      (owner.closing ??= new Set()).add(proc);
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
      // In doubt (no beat answered for a lease, or the claim last confirmed a lease ago: the node was
      // stalled, or cut from Redis): another node may have taken it for dead since, taken this close over
      // and run this hook. Redis is asked before the hook starts, so a hook runs twice only if it was
      // running when that happened.
      if (!pipeline.hooked.has(saved.pid) && this.#node.lease.inDoubt(confirmedAtMs)) {
        confirmedAtMs = performance.now();
        const [claimer, hookedSince] = await redis.hmget(`${settings.prefix}s:${id}`, 'cl', `hk:${saved.pid}`);
        if (claimer !== nodeId) return; // taken over meanwhile (and maybe finished)
        if (hookedSince === '1') continue; // by a node that took it over, then died: the claim came back here
      }
      if (!pipeline.hooked.has(saved.pid)) {
        pipeline.hooking = proc;
        try {
          pipeline.hooked.set(saved.pid, readable && await runHook(closeCtx, hook, proc, reason));
        } finally {
          pipeline.hooking = undefined;
        }
      }
      const markSentAtMs = performance.now();
      if (Number(await redis.lwsHooked(settings.prefix, id, saved.pid, nodeId)) !== 1) return; // taken over meanwhile
      confirmedAtMs = markSentAtMs;
    }
    // 4. Teardown: selections cleared, vars reset, every lock released cluster-wide.
    pipeline.phase = 'teardown';
    for (const proc of processes) await processInternals.teardown(proc);
    // Their list of held locks was in the state that could not be read; Redis knows them by process.
    for (const proc of unreadable) await this.#node.lockManager.releaseAll({ sessionId: id, processId: proc.processId }, []);
    const finishSentAtMs = performance.now();
    let finished: boolean;
    try {
      finished = Number(await redis.lwsFinish(settings.prefix, id, nodeId)) === 1;
    } catch (error) {
      // Its reply lost with its connection: the finish may have run. The claim is this node's, and no
      // other node takes it over within a lease: the session's key gone means this finish ran.
      if (await readAfterLostReply(settings, finishSentAtMs, () => redis.exists(`${settings.prefix}s:${id}`)) !== 0) throw error;
      finished = true;
    }
    if (!finished) return;
    pipeline.phase = 'done';
    this.#waits.finishedElsewhere(id);
    let hookFailures = 0;
    for (const ok of pipeline.hooked.values()) if (!ok) hookFailures++;
    const event: CloseEvent = { sessionId: id, reason, processCount: processes.length, hooksRun: pipeline.hooked.size, hookFailures, durationMs: ctx.clock.now() - startedAtMs };
    // No process at the end (its first init failed while it closed), or made here with its first init
    // still running (it outlasted the drain), or whose first request here failed or was refused (its
    // handle may be gone: neverMade): never made ('create' was never said), its close is not said, nor
    // counted where it was claimed (here). Made on another node, that node knows.
    if (processes.length > 0 && handle?.unborn !== true && this.#localHandle(id)?.unborn !== true && !this.#node.neverMade.has(id)) {
      if (pipeline.countAtEnd) ctx.counters.closed[reason]++;
      ctx.closed(event);
    } else if (claimedReason !== undefined) {
      ctx.counters.closed[reason]--;
    }
  }

  #runningHere(pid: string): WebProcess<Vars> | undefined {
    for (const proc of this.#node.runningHere.keys()) if (proc.processId === pid && !proc.closed) return proc;
    return undefined;
  }

  async #load(id: string): Promise<LoadedClose | undefined> {
    const { redis, settings, nodeId } = this.#node;
    const reply = await redis.lwsLoadClosingBuffer(settings.prefix, id, nodeId);
    if (text(reply[0]) !== 'ok') return undefined;
    const processes: LoadedClose['processes'] = [];
    for (let i = 2; i + 4 < reply.length; i += 5) {
      const pid = text(reply[i]);
      // A task spawned by a node of an earlier version has no name stored: 'task', as those nodes named it.
      // A name given to spawn may be '' (kept as given, as the memory store does): stored ones come after '='.
      const stored = text(reply[i + 4]);
      const name = pid.startsWith('t') ? (stored.startsWith('=') ? stored.slice(1) : 'task') : 'web';
      processes.push({ pid, busy: text(reply[i + 1]) !== '0', hooked: text(reply[i + 2]) === '1', state: toBuffer(reply[i + 3]), name });
    }
    return { reason: text(reply[1]) as CloseReason, processes };
  }
}

interface LoadedClose {
  readonly reason: CloseReason;
  /** `name`: the process's, as given to spawn ('web' for a request process). */
  readonly processes: { pid: string; busy: boolean; hooked: boolean; state: Buffer; name: string }[];
}

function toBuffer(value: string | number | Buffer | null | undefined): Buffer {
  return Buffer.isBuffer(value) ? value : Buffer.from(value === null || value === undefined ? '' : String(value));
}
