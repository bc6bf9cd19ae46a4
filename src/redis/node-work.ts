import type { SessionVars, WebProcess } from '../process.js';
import type { SessionHandle } from './node.js';
import type { ProcessSaves } from './processes.js';
import type { RedisRequestPath } from './requests.js';

/** What NodeWork counts, read when it counts (the parts are made after it). */
export interface NodeWorkParts<Vars extends SessionVars> {
  processes(): ProcessSaves<Vars>;
  requests(): RedisRequestPath<Vars>;
  readonly known: ReadonlyMap<string, SessionHandle<Vars>>;
  /** 'none'-mode requests running here. */
  readonly transients: ReadonlySet<WebProcess<Vars>>;
}

/**
 * The work running on this node now (saves on their way, requests being acquired, requests and tasks
 * running in sessions here, 'none'-mode requests) and the wait until none does, which a node's stop drains.
 */
export class NodeWork<Vars extends SessionVars> {
  readonly #parts: NodeWorkParts<Vars>;
  #onIdle: (() => void) | undefined;

  constructor(parts: NodeWorkParts<Vars>) {
    this.#parts = parts;
  }

  /** How much work runs here, `caller`'s excepted (a stop does not wait for the run that called it). */
  busyCount(caller: WebProcess<Vars> | undefined): number {
    const requests = this.#parts.requests();
    let busy = this.#parts.processes().pendingCount + requests.acquiringCount;
    // An init that called stop(): its acquire is the caller's own work (never waited for, as on the memory store).
    if (caller !== undefined && requests.initializing(caller)) busy--;
    // A request whose init runs is counted once, as being acquired (its process already runs in its session).
    for (const handle of this.#parts.known.values()) for (const proc of handle.processesHere()) if (proc !== caller && !requests.initializing(proc)) busy++;
    for (const proc of this.#parts.transients) if (proc !== caller) busy++;
    return busy;
  }

  /** Some work ended: a wait for idleness looks again. */
  checkIdle(): void {
    this.#onIdle?.();
  }

  /** Resolves once no work runs on this node (`caller`'s excepted): looked at again by every checkIdle. */
  whenIdle(caller: WebProcess<Vars> | undefined): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#onIdle = () => { if (this.busyCount(caller) === 0) resolve(); };
      this.#onIdle();
    });
  }
}
