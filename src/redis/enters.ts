import type { RuntimeOptions } from '../options.js';
import type { SessionVars } from '../process.js';
import { ScriptBatches } from './batches.js';
import { coalesces, flushWrites, sendAheadOfLaterCalls } from './coalesce.js';
import { keyTtlMs, text, waiterStaleMs, type NodeServices, type Reply } from './node.js';
import type { StateCopy } from './state-copies.js';

/** What one enter found (request-scripts.ts, ENTER). */
export type EnterOutcome =
  | {
    readonly kind: 'ok';
    readonly pid: string;
    readonly token: string;
    /** The process's state as Redis holds it: the node's copy when Redis left it out (exact, see ENTER). */
    readonly state: Buffer;
    readonly createdAtMs: number;
    readonly processCount: number;
  }
  /** Regenerated while this request was counted among its waiters: it goes on under `to`. */
  | { readonly kind: 'moved'; readonly to: string }
  | { readonly kind: 'unknown' | 'ip' | 'full' | 'busy' };

/** One enter's part of the call: who asks, and how it waits if the process is busy. */
export interface EnterRequest {
  readonly sessionId: string;
  readonly ip: string;
  /** Its name among the session's waiters in Redis (used only if it has to wait). */
  readonly waiterId: string;
  /** Counted among the session's waiters already. */
  readonly registered: boolean;
  /** Its client left while it waited: it takes the process in turn but is not counted as waiting. */
  readonly uncounted?: boolean;
}

/** 1 when a request must come from its session's address (legacy mode with IP validation). */
export function ipCheckOf(options: Pick<RuntimeOptions, 'mode' | 'ipValidation'>): 0 | 1 {
  return options.mode === 'legacy' && options.ipValidation ? 1 : 0;
}

const SIMPLE_OUTCOMES = new Set(['unknown', 'ip', 'full', 'busy']);

/**
 * A node's enters: those of the requests that reached it in one turn of its event loop go as one script
 * call (ENTER_MANY), from the turn's check phase, when the turn's other writes leave anyway
 * (coalesce.ts): no latency added, and one call's encoding, reply and Redis overhead shared by them all.
 * At most 64 per call: a script blocks Redis while it runs (about 15 µs per enter). The batch goes ahead
 * of any script call made after its enters (a waiter's registration, a create, a close), so the order
 * in which Redis sees them is the order they were made in.
 */
export class SessionEnters<Vars extends SessionVars> {
  readonly #node: NodeServices<Vars>;
  readonly #batches: ScriptBatches<Reply>;
  readonly #stopSendingAhead: () => void;

  constructor(node: NodeServices<Vars>) {
    this.#node = node;
    const { redis, settings } = node;
    // A client the application passed in is not corked (coalesce.ts): its enters leave at once, each its
    // own call, rather than wait for the end of the turn on the response's path.
    this.#batches = new ScriptBatches<Reply>(3, coalesces(redis) ? 64 : 1, (count, items) => {
      // What every enter shares is taken when the call leaves (an option set meanwhile applies to them all).
      const { options } = node.ctx;
      const sent = redis.lwsEnterManyBuffer(
        settings.prefix, count, options.inactiveSessionTimeoutMs, ipCheckOf(options), options.processesPerSession,
        options.maxConcurrentProcesses, node.nodeId, keyTtlMs(node.ctx, settings), options.maxQueuedRequests, waiterStaleMs(settings),
        ...items,
      );
      flushWrites(redis);
      return sent;
    });
    this.#stopSendingAhead = sendAheadOfLaterCalls(redis, () => this.#batches.flush());
  }

  /** The node has stopped: its batch no longer goes ahead of the client's calls (the client may live on, shared). */
  stop(): void {
    this.#stopSendingAhead();
  }

  /** Takes a process of the session (or says why not). `nowMs` is the request's start, its session's new last request. */
  async enter(request: EnterRequest, nowMs: number): Promise<EnterOutcome> {
    const copy: StateCopy | undefined = this.#node.copies.get(request.sessionId);
    // The node's own values in one argument (each argument costs its encoding on both sides); the
    // address and the id, which come from outside and may hold anything, in their own.
    const own = `${nowMs} ${request.waiterId} ${request.uncounted === true ? 2 : request.registered ? 1 : 0} ${copy?.pid ?? '-'} ${copy?.token ?? '-'}`;
    const sentAtMs = performance.now();
    const reply = await this.#batches.add([own, request.ip, request.sessionId]);
    const kind = text(reply[0]);
    if (kind === 'ok') {
      // Read while this node may have been taken for dead (it stalled, or was cut from Redis, with the
      // reply on its way), the process it granted may have been freed by the sweep since, and given to a
      // request on another node: running here would overlap it (and, the session closed meanwhile, run
      // in a closed session). Refused as a lost reply is (503); the sweep's repair frees the process if
      // it is still this node's, with the state last saved.
      this.#node.lease.refuseIfInDoubt('enter', sentAtMs);
      // 'ok', "pid token createdAtMs processCount copied", state.
      const [pid = '', token = '', createdAtMs, processCount, copied] = text(reply[1]).split(' ');
      const state = copied === '1' && copy !== undefined ? copy.bytes : reply[2] as Buffer;
      return { kind, pid, token, state, createdAtMs: Number(createdAtMs), processCount: Number(processCount) };
    }
    if (kind === 'moved') return { kind, to: text(reply[1]) };
    // This enter's own error in Redis (the call's other enters got their replies).
    if (kind === 'err') throw new Error(`the enter failed in Redis: ${text(reply[1])}`);
    if (SIMPLE_OUTCOMES.has(kind)) return { kind: kind as 'unknown' | 'ip' | 'full' | 'busy' };
    throw new Error(`the enter script answered ${JSON.stringify(kind)}`);
  }
}
