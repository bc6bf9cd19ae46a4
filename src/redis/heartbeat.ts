import { realTimer } from '../clock.js';
import { SessionError } from '../errors.js';
import type { SessionVars } from '../process.js';
import { keyTtlMs, unavailable, type NodeServices } from './node.js';

/**
 * This node's lease in the cluster (P node:<id>, holding Redis's time of its last beat), renewed every
 * third of `nodeLeaseMs`, and its view of the other nodes, which decides `onStop: 'auto'`.
 */
export class Heartbeat<Vars extends SessionVars> {
  readonly #node: NodeServices<Vars>;
  #timer: NodeJS.Timeout | undefined;
  /** Other live nodes at the last beat. */
  #othersAlive = 0;

  constructor(node: NodeServices<Vars>) {
    this.#node = node;
  }

  get othersAlive(): number {
    return this.#othersAlive;
  }

  /** A first beat, then one every third of the lease (unref'ed: it never keeps the process alive). */
  async start(): Promise<void> {
    await this.beat();
    this.#timer ??= setInterval(() => this.beatNow(), Math.max(1, Math.floor(this.#node.settings.nodeLeaseMs / 3)));
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** A beat now, not awaited (a failure waits for the next one): a stopping node asked ('h'). */
  beatNow(): void {
    void this.beat().catch(() => {});
  }

  /**
   * Renews this node's lease and learns how many other nodes are alive. Stopping, asked `since` a Redis
   * time: how many of them have not beaten since (a node killed within its lease looks alive until its
   * key expires), and Redis's time now.
   */
  async beat(stopping = false, since = 0): Promise<{ unconfirmed: number; now: number }> {
    const { ctx, redis, settings, nodeId } = this.#node;
    const reply = await redis.lwsHeartbeat(settings.prefix, nodeId, settings.nodeLeaseMs, stopping ? 1 : 0, keyTtlMs(ctx, settings), since);
    // Stopping, the reply is [confirmed, unconfirmed, Redis's time]; else the count of other nodes alive.
    const [confirmed = 0, unconfirmed = 0, now = 0] = Array.isArray(reply) ? reply.map(Number) : [Number(reply), 0, 0];
    this.#othersAlive = confirmed + unconfirmed;
    return { unconfirmed, now };
  }

  /**
   * Whether no other node is alive, for a stop with onStop 'auto'. A node killed or crashed within its
   * lease looks alive until its key expires: taken for alive, it would keep every session with no hook
   * run and nobody left to run it. So another node counts as alive once it has beaten since the question
   * was first asked (asked on the channel, live nodes answer at once; nodes of earlier versions at their
   * next beat); one whose key expires first was dead: a lease at most. A heartbeat that fails cannot
   * tell: the sessions are kept (as by onStop 'keep': a node that comes back times them out, hooks and
   * all) and the failure is reported, as a failed cluster close of onStop 'close' is.
   */
  isLastNode(): Promise<boolean> {
    const { ctx, redis, settings } = this.#node;
    const ask = async (): Promise<boolean> => {
      const first = await this.beat(true);
      if (this.#othersAlive > 0) await redis.publish(`${settings.prefix}ev`, 'h').catch(() => {});
      const deadlineMs = performance.now() + settings.nodeLeaseMs;
      for (;;) {
        if (this.#othersAlive === 0) return true;
        const { unconfirmed } = await this.beat(true, first.now);
        if (unconfirmed === 0 || this.#othersAlive > unconfirmed || performance.now() >= deadlineMs) return this.#othersAlive === 0;
        await new Promise<void>((resolve) => realTimer(resolve, settings.pollIntervalMs));
      }
    };
    return ask().catch((error: unknown) => {
      const cause = unavailable(error).message;
      ctx.report(new SessionError('ERR_SESSION_STORE_UNAVAILABLE', `stop(): could not learn whether other nodes are alive (onStop 'auto'), so the sessions were kept, not closed: ${cause}`, { cause: error }), 'storeErrors');
      return false;
    });
  }
}
