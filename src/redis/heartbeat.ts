import { realTimer } from '../clock.js';
import { SessionError } from '../errors.js';
import { processInternals, type SessionVars } from '../process.js';
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
  /** Redis's time of the last sweep that took this node for dead, as its beats told it (0: none). */
  #sweptSeenAtMs = 0;
  /** Stopping (any onStop): every beat says so (a drain may outlast the stopping key's lease). */
  #stopping = false;

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

  /**
   * This node's stop began: its beats say it is stopping from now on, whatever its onStop, so that a
   * node still draining (onStop 'keep' too) is not taken for one that goes on serving ('h' answers at once).
   */
  leaving(): void {
    this.#stopping = true;
  }

  /** A beat now, not awaited (a failure waits for the next one): a stopping node asked ('h'). */
  beatNow(): void {
    void this.beat(this.#stopping).catch(() => {});
  }

  /**
   * Renews this node's lease and learns how many other nodes are alive. Stopping, asked `since` a Redis
   * time: how many of them have not beaten since (a node killed within its lease looks alive until its
   * key expires), and Redis's time now.
   */
  async beat(stopping = false, since = 0): Promise<{ confirmed: number; unconfirmed: number; now: number; waitMs: number }> {
    const { ctx, redis, settings, nodeId } = this.#node;
    const sentAtMs = performance.now();
    const reply = await redis.lwsHeartbeat(settings.prefix, nodeId, settings.nodeLeaseMs, stopping ? 1 : 0, keyTtlMs(ctx, settings), since);
    // [other nodes alive (stopping: confirmed), unconfirmed, Redis's time, longest PTTL of the
    // unconfirmed, swept]; the last three only when stopping.
    const [confirmed = 0, unconfirmed = 0, now = 0, waitMs = 0, swept = 0] = Array.isArray(reply) ? reply.map(Number) : [Number(reply)];
    this.#othersAlive = confirmed + unconfirmed;
    this.#node.lease.answered(sentAtMs);
    // Redis's time of the last sweep that took this node for dead: one newer than the last seen is news.
    if (swept > this.#sweptSeenAtMs) {
      this.#sweptSeenAtMs = swept;
      this.#takenForDead();
    }
    return { confirmed, unconfirmed, now, waitMs };
  }

  /**
   * A sweep took this node for dead (no beat of it reached Redis for two leases: it was stalled, or cut
   * from Redis) and freed the processes it was running: each may run a request on another node now. The
   * requests and tasks still running here go on, but whatever they change is not saved (their releases
   * are fenced), their lock calls refused (tryLock with ERR_SESSION_CLOSED, unlock false); their signals
   * abort, so that work which heeds them stops, and the operator hears it once.
   * Only work that entered before the sweep is running when this is learnt: the beat that learns it ran
   * in Redis before any enter sent after it, and its reply comes first.
   */
  #takenForDead(): void {
    const { ctx, runningHere, fencedRuns } = this.#node;
    for (const proc of runningHere.keys()) {
      // Its process id's record locks may be another node's request's now: its lock calls are refused.
      fencedRuns.add(proc);
      processInternals.abort(proc, () => new SessionError('ERR_SESSION_WRITE_FENCED', `${proc.processId}: this node was taken for dead and its process freed; what this run changes is not saved`, { sessionId: proc.sessionId }));
    }
    ctx.report(new SessionError('ERR_SESSION_WRITE_FENCED', `this node was taken for dead (none of its heartbeats reached Redis for two node leases): the processes of the ${runningHere.size} request(s) and task(s) it was running were freed; those runs go on here, with their signals aborted, and save nothing`), 'storeErrors');
  }

  /**
   * Whether no other node is alive, for a stop with onStop 'auto'. A node killed or crashed within its
   * lease looks alive until its key expires: taken for alive, it would keep every session with no hook
   * run and nobody left to run it. So another node counts as alive once it has beaten since the question
   * was first asked (asked on the channel, live nodes answer at once; nodes of earlier versions at their
   * next beat); one whose key expires first was dead: its own node's lease at most. Meanwhile, and while
   * this node drains, its beats say it is stopping. A heartbeat that fails cannot
   * tell: the sessions are kept (as by onStop 'keep': a node that comes back times them out, hooks and
   * all) and the failure is reported, as a failed cluster close of onStop 'close' is.
   */
  isLastNode(): Promise<boolean> {
    const { ctx, redis, settings } = this.#node;
    const ask = async (): Promise<boolean> => {
      const first = await this.beat(true);
      if (first.confirmed === 0) return true;
      await redis.publish(`${settings.prefix}ev`, 'h').catch(() => {});
      // An unconfirmed key is never renewed without confirming its node: it expires within the waitMs
      // Redis gives (its own node's lease, which may be longer than this node's). The decision is taken
      // on a beat that ran in Redis, never on a deadline passed while a reply was on its way; the bound
      // only guards against a key that outlives what Redis said.
      let giveUpMs: number | undefined;
      for (;;) {
        const { confirmed, unconfirmed, waitMs } = await this.beat(true, first.now);
        if (confirmed > 0) return false;
        if (unconfirmed === 0) return true;
        giveUpMs ??= performance.now() + waitMs + settings.nodeLeaseMs;
        if (performance.now() >= giveUpMs) throw new Error(`${unconfirmed} node(s) neither beat nor let their lease key expire`);
        await new Promise<void>((resolve) => realTimer(resolve, Math.max(1, Math.min(settings.pollIntervalMs, waitMs + 1))));
      }
    };
    return ask().catch((error: unknown) => {
      const cause = unavailable(error).message;
      ctx.report(new SessionError('ERR_SESSION_STORE_UNAVAILABLE', `stop(): could not learn whether other nodes are alive (onStop 'auto'), so the sessions were kept, not closed: ${cause}`, { cause: error }), 'storeErrors');
      return false;
    });
  }
}
