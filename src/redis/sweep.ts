import { realTimer, type TimerHandle } from '../clock.js';
import type { SessionVars } from '../process.js';
import type { CloseReason } from '../session.js';
import { keyTtlMs, nearExpiryMs, text, type NodeServices, type Reply } from './node.js';

/** Sessions claimed per sweep (and per batch of a cluster shutdown); more wait for the next turn of the event loop. */
export const SWEEP_BATCH = 512;

/** Cluster-wide counts as the last sweep read them. */
export interface SweepGauges {
  readonly sessions: number;
  readonly idleSessions: number;
  readonly closingSessions: number;
  readonly processes: number;
}

/**
 * The periodic sweep of one node, every `sweepIntervalMs` of the engine's clock (timeouts are session
 * time, so a test clock drives them): claims the sessions whose inactivity deadline passed, takes over
 * the closes of dead nodes and frees what they ran (one script), and reads the gauges. Every node sweeps;
 * the script gives each due session to one of them. A full batch sweeps again on the next turn.
 */
export class RedisSweep<Vars extends SessionVars> {
  readonly #node: NodeServices<Vars>;
  /**
   * Runs the close pipeline for a session this sweep claimed (`undefined`: a close taken over, reason as
   * claimed). `countAtEnd`: a claim of this node whose reply was lost (never counted), run by the repair.
   */
  readonly #start: (id: string, reason: CloseReason | undefined, countAtEnd?: boolean) => void;
  #timer: TimerHandle | undefined;
  #sweeping = false;
  #stopped = false;
  gauges: SweepGauges = { sessions: 0, idleSessions: 0, closingSessions: 0, processes: 0 };

  constructor(node: NodeServices<Vars>, start: (id: string, reason: CloseReason | undefined, countAtEnd?: boolean) => void) {
    this.#node = node;
    this.#start = start;
  }

  /** Arms the next sweep on the engine's clock. */
  arm(): void {
    if (this.#stopped || this.#timer !== undefined) return;
    const clock = this.#node.ctx.clock;
    const schedule = clock.setTimer?.bind(clock) ?? realTimer;
    this.#timer = schedule(() => {
      this.#timer = undefined;
      // One turn later: a test clock that jumped hours has its final time by then, so one sweep sees it.
      setImmediate(() => void this.#sweep());
    }, this.#node.settings.sweepIntervalMs);
  }

  stop(): void {
    this.#stopped = true;
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  async #sweep(): Promise<void> {
    if (this.#sweeping || this.#stopped) return;
    this.#sweeping = true;
    const { ctx, redis, settings, nodeId } = this.#node;
    let full = false;
    try {
      const reply = await redis.lwsSweep(settings.prefix, ctx.clock.now(), ctx.options.inactiveProcessTimeoutMs, nodeId, SWEEP_BATCH, settings.nodeLeaseMs, keyTtlMs(ctx, settings), nearExpiryMs(settings)) as Reply;
      const bar = reply.indexOf('|');
      const bar2 = reply.indexOf('|', bar + 1);
      const due = reply.slice(0, bar).map(text);
      const takenOver = reply.slice(bar + 1, bar2).map(text);
      const [open, idle, closing, procs] = reply.slice(bar2 + 1).map(Number);
      this.gauges = { sessions: open ?? 0, idleSessions: idle ?? 0, closingSessions: closing ?? 0, processes: procs ?? 0 };
      for (const id of due) {
        ctx.counters.closed.timeout++;
        this.#start(id, 'timeout');
      }
      for (const id of takenOver) this.#start(id, undefined);
      full = due.length === SWEEP_BATCH;
      if (this.#node.lostReplies.due) await this.#repair();
    } catch {
      // Redis is away: requests get 503 meanwhile; the next sweep tries again. The sweep may have run
      // without its reply coming back (its claims are then this node's): the repair runs them.
      this.#node.lostReplies.due = true;
    } finally {
      this.#sweeping = false;
    }
    if (full) setImmediate(() => void this.#sweep());
    else this.arm();
  }

  /**
   * What replies this node never read left behind: its claimed closes it does not run are run, and its
   * processes taken by no work of its are freed, in two steps. The first finds the processes taken and
   * not kept; after its reply (and one turn more) every reply sent before it has been read, so work that
   * took one of them runs and is kept by then: the second frees only the others, and only if their token
   * has not moved.
   */
  async #repair(): Promise<void> {
    const { redis, settings, nodeId, lostReplies } = this.#node;
    lostReplies.due = false;
    try {
      const reply = (await redis.lwsRepairFind(settings.prefix, nodeId, ...this.#node.keptPids()) as Reply).map(text);
      const bar = reply.indexOf('|');
      for (const id of reply.slice(bar + 1)) this.#start(id, undefined, true);
      const found = reply.slice(0, bar);
      if (found.length === 0) return;
      await new Promise((resolve) => setImmediate(resolve));
      const kept = new Set(this.#node.keptPids());
      const orphans = found.filter((entry) => !kept.has(entry.split(' ')[1] ?? ''));
      if (orphans.length > 0) await redis.lwsRepairFree(settings.prefix, nodeId, ...orphans);
    } catch {
      lostReplies.due = true;
    }
  }

}
