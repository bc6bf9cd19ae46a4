import { SessionError } from '../errors.js';
import type { SessionVars } from '../process.js';
import type { StoreContext } from '../store.js';
import { unavailable } from './node.js';

/**
 * A node's start: joining its cluster (`join`: connect, subscribe, first heartbeat, the cluster's options,
 * the sweep). Begun when the store is attached; if it fails (Redis away when the node came up), the next
 * request that needs the node started tries again. Requests that arrive during an attempt share it: each
 * gets its 503 when it fails, not after the attempts of the requests before it. A failed start is said on
 * 'error' once until a start succeeds: a node that cannot join is heard of before any request comes.
 */
export class NodeStart {
  readonly #ctx: Pick<StoreContext<SessionVars>, 'report'>;
  readonly #join: () => Promise<void>;
  #ready: Promise<void>;
  /** The start succeeded (it is never undone: `ready` stays resolved). */
  #isStarted = false;
  /** The last attempt failed: the next `started()` tries again. */
  #failed = false;
  #failureSaid = false;

  constructor(ctx: Pick<StoreContext<SessionVars>, 'report'>, join: () => Promise<void>) {
    this.#ctx = ctx;
    this.#join = join;
    this.#ready = this.#attempt();
  }

  get isStarted(): boolean {
    return this.#isStarted;
  }

  /** The latest attempt, settled or not (a stop waits for it, whatever its outcome). */
  get ready(): Promise<void> {
    return this.#ready;
  }

  /** Started, or starting again if the last attempt failed. */
  started(): Promise<void> {
    if (this.#failed) this.#ready = this.#attempt();
    return this.#ready;
  }

  #attempt(): Promise<void> {
    this.#failed = false;
    const attempt = this.#join().then(() => { this.#isStarted = true; });
    // Also keeps a failed start from being an unhandled rejection until a request awaits it.
    attempt.catch((error: unknown) => {
      if (this.#ready === attempt) this.#failed = true;
      if (this.#failureSaid) return;
      this.#failureSaid = true;
      this.#ctx.report(new SessionError('ERR_SESSION_STORE_UNAVAILABLE', `the node could not join its cluster (the next request tries again): ${unavailable(error).message}`, { cause: error }), 'storeErrors');
    });
    return attempt;
  }
}
