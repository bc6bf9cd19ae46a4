import { TIMED_OUT, within } from '../close.js';
import { msLeft, waitDeadline, type WaitDeadline } from '../clock.js';
import { SessionError } from '../errors.js';
import type { RequestLease } from '../lease.js';
import { isThenable, type MaybePromise } from '../maybe-async.js';
import type { SessionVars } from '../process.js';
import type { RequestIdentity, StoreContext } from '../store.js';
import { ipCheckOf, SessionEnters, type EnterOutcome } from './enters.js';
import { keyTtlMs, text, waiterStaleMs, type NodeServices, type RedisSettings, type SessionHandle, type StoreCommands } from './node.js';
import type { TurnQueues, Waiter } from './turns.js';

type Lease<Vars extends SessionVars> = RequestLease<Vars, SessionHandle<Vars>>;
type Rejection<Vars extends SessionVars> = keyof StoreContext<Vars>['counters']['rejected'];

/** What the request path gives the way into a cookie's session. */
export interface SessionEntryDeps<Vars extends SessionVars> {
  readonly node: NodeServices<Vars>;
  readonly turns: TurnQueues;
  /** True once the node stops taking work. */
  refusing(): boolean;
  /** Counts a refusal by its cause and returns the error to throw. */
  reject(cause: Rejection<Vars>, error: SessionError): SessionError;
  /** The lease of a request that entered its session's process (`nowMs`: the request's start). */
  admit(id: string, ip: string, entered: Extract<EnterOutcome, { kind: 'ok' }>, nowMs: number): MaybePromise<Lease<Vars>>;
  /** A new session for this request. */
  create(ip: string): Promise<Lease<Vars>>;
}

/**
 * A request with a cookie, on the Redis store: into a process of its session now (one enter, batched
 * with the node's other enters of the turn), or after the requests ahead of it. On this node the wait is
 * FIFO and every waiter is counted in Redis, so `maxQueuedRequests` holds cluster-wide; a session
 * regenerated meanwhile takes its waiters along; one that closed meanwhile gets one successor, which the
 * node's other waiters for it join.
 */
export class SessionEntry<Vars extends SessionVars> {
  readonly #deps: SessionEntryDeps<Vars>;
  readonly #ctx: StoreContext<Vars>;
  readonly #redis: StoreCommands;
  readonly #settings: RedisSettings;
  readonly #node: NodeServices<Vars>;
  readonly #turns: TurnQueues;
  readonly #enters: SessionEnters<Vars>;
  /** Closed id → the new session its waiting requests move to (kept while some still wait). */
  readonly #successors = new Map<string, Promise<string | undefined>>();
  #waiterSeq = 0;

  constructor(deps: SessionEntryDeps<Vars>) {
    this.#deps = deps;
    this.#node = deps.node;
    this.#ctx = deps.node.ctx;
    this.#redis = deps.node.redis;
    this.#settings = deps.node.settings;
    this.#turns = deps.turns;
    this.#enters = new SessionEnters(deps.node);
  }

  /** The node has stopped taking requests for good (see SessionEnters.stop). */
  stop(): void {
    this.#enters.stop();
  }

  /**
   * The cookie's session, if it is live: its process now, or after the requests ahead of this one. On
   * this node the wait is FIFO (a newcomer queues behind waiting requests); between nodes, whoever
   * retries first after a release gets the process.
   */
  async enter(cookieId: string, ip: string, queueDeadline?: WaitDeadline, request?: RequestIdentity): Promise<Lease<Vars> | undefined> {
    const { options, clock } = this.#ctx;
    // The session's id: the cookie's, or the new one if the session is regenerated while this waits.
    let id = cookieId;
    let me: Waiter | undefined;
    // Named only if it has to wait; Redis then counts it among the session's waiters until it gets in,
    // gives up, or stops trying (its node died) for a few poll periods.
    const waiterId = `${this.#node.nodeId}:${++this.#waiterSeq}`;
    let registered = false;
    // The closed id whose successor this request made or joined: cleared in the finally below like the id
    // it ends under, which differs when a rename of the session is heard after the reply that said it was gone.
    let succeeding: string | undefined;
    let releasedMeanwhile = false;
    // Its client left while it waited: it keeps its turn on this node (it still runs in turn) but no
    // longer counts among the session's waiters in Redis (maxQueuedRequests).
    let clientLeft = false;
    let stopWatching: (() => void) | undefined;
    const watch = (): void => {
      stopWatching ??= request?.watchClientLeaving?.(() => {
        clientLeft = true;
        if (registered) this.#redis.zrem(`${this.#settings.prefix}wq:${me?.sessionId ?? id}`, waiterId).catch(() => {});
      });
    };
    // Set when it first has to wait (in the session it waited for first, if that one closed): the queue
    // timeout counts from then.
    let deadline: WaitDeadline | undefined = queueDeadline;
    try {
      const ipCheck = ipCheckOf(options);
      if (this.#turns.waiting(id) > 0) {
        // Behind this node's waiters: counted in Redis now (the bound is cluster-wide), FIFO here.
        const admitted = text(await this.#register(id, waiterId, ip, ipCheck) as string);
        if (admitted === 'unknown') return undefined;
        this.#throwIfRefused(admitted, id);
        registered = true;
        me = this.#turns.enqueue(id);
        watch();
        deadline ??= waitDeadline(clock, options.queueTimeoutMs);
        await this.#turn(me, waiterId, ip, ipCheck, deadline, () => clientLeft);
        id = me.sessionId;
      }
      for (;;) {
        if (this.#deps.refusing()) throw this.#deps.reject('stopped', new SessionError('ERR_SESSION_STOPPED'));
        const nowMs = clock.now();
        const onItsWay = this.#turns.entering(id);
        let entered: EnterOutcome;
        try {
          entered = await this.#enters.enter({ sessionId: id, ip, waiterId, registered, uncounted: clientLeft }, nowMs);
        } finally {
          releasedMeanwhile = this.#turns.entered(id, onItsWay);
        }
        const outcome = entered.kind;
        if (entered.kind === 'ok') {
          registered = false;
          const leased = this.#deps.admit(id, ip, entered, nowMs);
          // Awaited only when it is a promise (a process without state runs init): awaiting a lease would cost a turn.
          return isThenable(leased) ? await leased : leased;
        }
        // 'unknown' about an id this waiter has been moved from meanwhile (this node heard of a rename while
        // the enter was on its way): the reply is about the old id, and it tries again under the new one,
        // so that a successor, if one is needed, is filed under the id this node's other waiters of the
        // session (moved with it) look up, and which the finally below clears.
        const movedMeanwhile = outcome === 'unknown' && me !== undefined && me.sessionId !== id;
        if ((entered.kind === 'moved' || movedMeanwhile) && me !== undefined) {
          // Regenerated while this waited (on any node): this node's waiters follow it, in their order.
          if (entered.kind === 'moved') this.#turns.move(id, entered.to);
          id = me.sessionId;
          // Behind requests that already waited here under the new id: its turn comes after theirs.
          if (!this.#turns.isHead(me)) {
            deadline ??= waitDeadline(clock, options.queueTimeoutMs);
            await this.#turn(me, waiterId, ip, ipCheck, deadline, () => clientLeft);
            id = me.sessionId;
          }
          continue;
        }
        if (outcome === 'unknown' || outcome === 'moved') {
          if (!registered) return undefined;
          succeeding = id;
          return await this.#successor(id, ip, deadline, request);
        }
        this.#throwIfRefused(outcome, id);
        registered = true;
        me ??= this.#turns.enqueue(id);
        watch();
        // Busy when Redis ran the enter, released since: the wake was missed, so the head tries again now.
        if (releasedMeanwhile && this.#turns.isHead(me)) continue;
        deadline ??= waitDeadline(clock, options.queueTimeoutMs);
        await this.#turn(me, waiterId, ip, ipCheck, deadline, () => clientLeft);
        id = me.sessionId;
      }
    } finally {
      stopWatching?.();
      // Another waiter of this node may have moved this one meanwhile (a 'moved' it learnt first).
      if (me !== undefined) id = me.sessionId;
      if (me !== undefined) this.#turns.dequeue(id, me);
      if (this.#turns.waiting(id) === 0) this.#successors.delete(id);
      if (succeeding !== undefined && succeeding !== id && this.#turns.waiting(succeeding) === 0) this.#successors.delete(succeeding);
      // Given up while counted as waiting: stop counting now rather than when it goes stale.
      if (registered) this.#redis.zrem(`${this.#settings.prefix}wq:${id}`, waiterId).catch(() => {});
    }
  }

  /** Redis refused the request at the door (lwsWait and lwsEnter answer alike): the other address, or a full queue. */
  #throwIfRefused(answer: string, sessionId: string): void {
    if (answer === 'ip') throw this.#deps.reject('ipMismatch', new SessionError('ERR_SESSION_IP_MISMATCH', undefined, { sessionId }));
    if (answer === 'full') throw this.#deps.reject('queueFull', new SessionError('ERR_SESSION_QUEUE_FULL', undefined, { sessionId }));
  }

  /** Its turn, or the queue timeout: then it stops waiting (its polls end) and the request gets 503. */
  async #turn(me: Waiter, waiterId: string, ip: string, ipCheck: 0 | 1, deadline: WaitDeadline, uncounted: () => boolean): Promise<void> {
    const { clock } = this.#ctx;
    // A clock without timers of its own bounds waits in real time too (clock.ts, timerOn): the real
    // deadline is kept across the wait's turns, or each poll of the head waiter would start it again.
    const leftMs = msLeft(clock, deadline);
    // Past it already (time moved while its last try was on its way): no wait on a timer that may not fire soon.
    if (leftMs > 0) {
      const turn = this.#turns.turn(me, this.#stillWaiting(me, waiterId, ip, ipCheck, uncounted));
      if (await within(clock, leftMs, turn) !== TIMED_OUT) return;
      me.wake?.();
    }
    throw this.#deps.reject('queueTimeout', new SessionError('ERR_SESSION_QUEUE_TIMEOUT', `after ${this.#ctx.options.queueTimeoutMs} ms`, { sessionId: me.sessionId }));
  }

  /** Counts the request among the session's waiters in Redis (checked as an enter checks the session). */
  #register(sessionId: string, waiterId: string, ip: string, ipCheck: 0 | 1): Promise<unknown> {
    const { options, clock } = this.#ctx;
    return this.#redis.lwsWait(
      this.#settings.prefix, sessionId, waiterId, options.maxQueuedRequests, waiterStaleMs(this.#settings), keyTtlMs(this.#ctx, this.#settings), clock.now(), options.inactiveSessionTimeoutMs, ipCheck, ip,
    );
  }

  /** Each poll spent behind others of this node: still counted in Redis (it would go stale). Made only for a request that waits. */
  #stillWaiting(waiter: Waiter, waiterId: string, ip: string, ipCheck: 0 | 1, uncounted: () => boolean): () => void {
    return () => { if (!uncounted()) void this.#register(waiter.sessionId, waiterId, ip, ipCheck).catch(() => {}); };
  }

  /**
   * The session closed while this request waited for it: the first such request of this node makes a
   * new session, the others join it (one browser, one session, as with the memory store).
   */
  async #successor(closedId: string, ip: string, deadline: WaitDeadline | undefined, request: RequestIdentity | undefined): Promise<Lease<Vars> | undefined> {
    const joined = this.#successors.get(closedId);
    if (joined !== undefined) {
      const next = await joined;
      return next === undefined ? undefined : this.enter(next, ip, deadline, request);
    }
    const creating = this.#deps.create(ip);
    // A throw-away process ('none' mode set meanwhile) has no session for the others to join.
    this.#successors.set(closedId, creating.then((lease) => lease.sessionId || undefined, () => undefined));
    return creating;
  }
}
