import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { TIMED_OUT, within } from '../close.js';
import { SessionError, SessionOptionError } from '../errors.js';
import type { RequestLease } from '../lease.js';
import type { OptionName } from '../options.js';
import type { SessionVars, WebProcess } from '../process.js';
import type { AttachedStore, RequestIdentity, StoreContext, StoreGauges } from '../store.js';
import type { SessionInfo } from '../types.js';
import { RedisCloser } from './closer.js';
import { RedisLockManager } from './locks.js';
import { leaveCluster } from './node-keys.js';
import { connected, reportEvictingRedis } from './connection.js';
import { Heartbeat } from './heartbeat.js';
import { keyTtlMs, unavailable, type NodeServices, type RedisSettings, type SessionHandle, type StoreCommands } from './node.js';
import { RunLocks } from './run-locks.js';
import { listenTo } from './messages.js';
import { ClusterOptions } from './cluster-options.js';
import { closeEnded, dropIfDone } from './close-ends.js';
import { ProcessSaves } from './processes.js';
import { RedisRequestPath } from './requests.js';
import { SessionRenames } from './renames.js';
import { StateCopies } from './state-copies.js';
import { NodeWork } from './node-work.js';
import { NodeLease } from './node-lease.js';
import { NodeStart } from './node-start.js';
import { TurnQueues } from './turns.js';
import { Retries } from './retries.js';
import { knownExpiresAtMs, knownProcessCount, knownSessions, nodeGauges } from './reads.js';
import type { ProcessRun } from '../runs.js';

/**
 * The Redis store attached to one engine: one node of a cluster. Requests enter and leave their
 * process through one script each; closes are claimed by one node and run there; pub/sub tells the
 * other nodes (abort a closing session's work, wake waiting requests, apply options).
 */
export class RedisSessions<Vars extends SessionVars> implements AttachedStore<Vars> {
  readonly lockManager: RedisLockManager;
  readonly #ctx: StoreContext<Vars>;
  readonly #redis: StoreCommands;
  readonly #subscriber: Redis;
  readonly #settings: RedisSettings;
  readonly #node: NodeServices<Vars>;
  readonly #closer: RedisCloser<Vars>;
  /** Sessions this node has served, by id (dropped when a close is announced). */
  readonly #known = new Map<string, SessionHandle<Vars>>();
  readonly #renames: SessionRenames<Vars>;
  readonly #turns: TurnQueues;
  readonly #options: ClusterOptions<Vars>;
  readonly #processes: ProcessSaves<Vars>;
  readonly #transients = new Set<WebProcess<Vars>>();
  readonly #requests: RedisRequestPath<Vars>;
  readonly #start: NodeStart;
  readonly #closeClients: (ownCloses: () => void) => Promise<void>;
  readonly #heartbeat: Heartbeat<Vars>;
  readonly #work = new NodeWork<Vars>({ processes: () => this.#processes, requests: () => this.#requests, known: this.#known, transients: this.#transients });
  #refusing = false;
  /** stop(): its claims of the cluster's sessions have been made (or none will be). */
  #stopClaims: Promise<void> | undefined;
  /** Processes of this node that called stop() from their own session, by session id: its close does not wait for them. */
  readonly #stopInsiders = new Map<string, WebProcess<Vars>>();
  /** stop() has ended: the node has left, or leaves once the request that called it ends. */
  #stopped = false;
  /** Redis's eviction policy was read (at the first start attempt that could): said once per node. */
  #evictionChecked = false;

  constructor(ctx: StoreContext<Vars>, redis: StoreCommands, subscriber: Redis, settings: RedisSettings, closeClients: (ownCloses: () => void) => Promise<void>) {
    if (ctx.locks !== undefined) throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', 'locks: the Redis store brings its own lock manager (record locks must be shared by every node)');
    this.#ctx = ctx;
    this.#redis = redis;
    this.#subscriber = subscriber;
    this.#settings = settings;
    this.#closeClients = closeClients;
    this.#turns = new TurnQueues(settings.pollIntervalMs);
    const nodeId = randomUUID();
    this.lockManager = new RedisLockManager({ redis, prefix: settings.prefix, lockTtlMs: keyTtlMs(ctx, settings), now: () => ctx.clock.now() });
    const runningHere = new Map<WebProcess<Vars>, SessionHandle<Vars>>();
    this.#node = { ctx, redis, settings, nodeId, lockManager: this.lockManager, retries: new Retries(settings.pollIntervalMs), lease: new NodeLease(settings.nodeLeaseMs), drainEnded: false, runningHere, runLocks: new RunLocks(this.lockManager, runningHere), fencedRuns: new WeakSet(), neverMade: new Set(), copies: new StateCopies(settings.stateCopyBytes), spawn: (handle, name, task) => this.#processes.spawn(handle, name, task),
      tearDown: (proc) => this.#processes.tearDown(proc), giveBack: (proc, refs) => this.#processes.giveBack(proc, refs), handOver: (handle, proc) => this.#processes.handOver(handle, proc),
      closeFinished: (id) => this.#closer.waits.closeFinished(id), closeEnded: (id) => closeEnded(this.#known, id), pastDrain: (id) => this.#closer.pastDrain(id),
      lostReplies: { due: false }, keptPids: () => this.#keptPids() };
    this.#heartbeat = new Heartbeat(this.#node);
    // A cut connection may have taken replies with it (of scripts Redis ran): the sweeps repair them.
    redis.on('close', this.#onClientClose);
    redis.on('ready', this.#onClientReady);
    this.#renames = new SessionRenames(this.#node, this.#known, this.#turns, this.lockManager);
    this.#closer = new RedisCloser(this.#node, (id) => this.#known.get(id), (oldId, newId) => this.#renames.renamed(oldId, newId));
    this.#processes = new ProcessSaves(this.#node, (handle) => {
      dropIfDone(this.#known, handle);
      this.#turns.released(handle.id);
    }, () => this.#work.checkIdle());
    this.#requests = new RedisRequestPath<Vars>({
      node: this.#node, known: this.#known, renames: this.#renames, turns: this.#turns, processes: this.#processes, closer: this.#closer, transients: this.#transients,
      refusing: () => this.#refusing, started: () => (this.#start.isStarted ? undefined : this.#start.started()), checkIdle: () => this.#work.checkIdle(),
    });
    this.#options = new ClusterOptions(this.#node, () => this.#start.started(), (work) => this.#processes.track(work));
    const heard = { ctx, node: this.#node, known: this.#known, turns: this.#turns, closer: this.#closer, renames: this.#renames, options: this.#options, beat: () => { if (!this.#stopped) this.#heartbeat.beatNow(); } };
    listenTo(this.#subscriber, heard);
    this.#start = new NodeStart(ctx, () => this.#join());
  }

  readonly #onClientClose = (): void => { this.#node.lostReplies.due = true; };
  // Back after an outage longer than a lease, the node is in doubt (node-lease.ts) until a beat is
  // answered: one now, not up to a third of a lease later (enters meanwhile would get 503s).
  readonly #onClientReady = (): void => { if (this.#start?.isStarted === true && !this.#stopped) this.#heartbeat.beatNow(); };

  /** The steps of the node's start (node-start.ts: retried by the next request after a failure). */
  async #join(): Promise<void> {
    const { prefix } = this.#settings;
    // Commands fail fast while disconnected (no offline queue): the first ones wait for the connection.
    if (this.#redis.status !== 'ready') await connected(this.#redis, this.#ctx.options.closeTimeoutMs);
    await this.#subscriber.subscribe(`${prefix}ev`);
    void this.#checkEvictionPolicy();
    await this.#heartbeat.start();
    // Options set at run time on any node apply to a node that joins later too.
    await this.#options.applyAtStart();
    this.#closer.armSweep();
  }

  /** Reports a Redis that may evict (ERR_SESSION_STORE_EVICTS), once per node. Not awaited by the start. */
  async #checkEvictionPolicy(): Promise<void> {
    if (!this.#evictionChecked) this.#evictionChecked = await reportEvictingRedis(this.#redis, (error) => this.#ctx.report(error, 'storeErrors'));
  }

  #keptPids(): string[] {
    const pids = this.#processes.writingPids();
    // Every run of this node, whatever handle it is under (one dropped from #known included).
    for (const proc of this.#node.runningHere.keys()) pids.push(proc.processId);
    return pids;
  }

  // ---- requests (src/redis/requests.ts), closing, stopping ---------------------------------------------

  acquire(request: RequestIdentity): Promise<RequestLease<Vars>> {
    return this.#requests.acquire(request);
  }

  closeSession(id: string, run: ProcessRun<Vars> | undefined): Promise<boolean> {
    // Stopped, the node knows no session (as the memory store), and may have no Redis connection left.
    if (this.#stopped) return Promise.resolve(false);
    // A node that has not started yet (still connecting: its commands would fail at once) closes once
    // started, as its first requests wait for the start.
    if (!this.#start.isStarted) {
      return this.#start.started().then(
        () => (this.#stopped ? false : this.#closer.closeSession(id, run)),
        (error: unknown) => { throw unavailable(error); },
      );
    }
    return this.#closer.closeSession(id, run);
  }

  regenerate(id: string, caller: WebProcess<Vars> | undefined): Promise<string | null> {
    // Stopped, the node knows no session (as the memory store, which answers null) and may have no
    // Redis connection left: a rename sent now would wait out a node lease on a closed connection.
    if (this.#stopped) return Promise.resolve(null);
    return this.#renames.regenerate(id, caller);
  }

  refuse(): void {
    this.#refusing = true;
    // Waiting requests learn it now (503), not when the process they wait for is released.
    this.#turns.wakeAll();
  }

  /**
   * Stops this node: in-flight work ends (bounded by closeTimeoutMs), saves land, closes this node
   * claimed finish. The sessions close with 'shutdown' only when the cluster stops: `onStop: 'auto'`
   * closes them when no other node is alive, `'close'` always, `'keep'` never (a rolling restart).
   */
  async stop(caller: WebProcess<Vars> | undefined): Promise<void> {
    const ctx = this.#ctx;
    let claimsMade!: () => void;
    this.#stopClaims = new Promise<void>((resolve) => { claimsMade = resolve; });
    if (caller !== undefined && caller.sessionId !== '') this.#stopInsiders.set(caller.sessionId, caller);
    try {
      this.#heartbeat.leaving();
      await this.#start.ready.catch(() => {});
      // Said at once (onStop 'auto' says it asking who is alive): the last node's stop takes the options
      // set at run time with it, whatever its onStop (HEARTBEAT).
      if (this.#settings.onStop !== 'auto') this.#heartbeat.beatNow();
      // Whether the cluster stops is asked now (a fresh heartbeat answers how many other nodes are
      // alive); from then on the cookie of a request still running here is cleared, as with the memory
      // store, and the closes' pipelines wait for that request like any drain.
      // Until Redis answers, the last heartbeat's view decides for the cookies of requests running here
      // (their responses may be written meanwhile); the answer then confirms or gives them back.
      const likely = this.#settings.onStop === 'close' || (this.#settings.onStop === 'auto' && this.#heartbeat.othersAlive === 0);
      const tentative = likely ? [...this.#known.values()].filter((h) => h.state === 'open') : [];
      for (const handle of tentative) handle.state = 'closing';
      const clusterStops = this.#settings.onStop === 'close' || (this.#settings.onStop === 'auto' && await this.#heartbeat.isLastNode());
      if (clusterStops) for (const handle of this.#known.values()) handle.markClosing();
      // Not one whose close started meanwhile ('c' or 'x' heard during the round trip).
      else for (const handle of tentative) if (handle.state === 'closing' && !handle.closeStarted) handle.state = 'open';
      let closing: Promise<void> = Promise.resolve();
      if (clusterStops) {
        // Read as each close starts: a further stop() caller met before its session's claim is an insider too.
        const claimed = this.#closer.claimAll(this.#stopInsiders);
        claimed.then(claimsMade, claimsMade);
        closing = claimed.then(() => this.#closer.settle(caller));
        // Awaited below, after the local drain: a failure meanwhile (Redis away) must not go unhandled.
        closing.catch(() => {});
      } else {
        claimsMade();
      }
      const drained = await within(ctx.clock, ctx.options.closeTimeoutMs, this.#work.whenIdle(caller));
      this.#node.drainEnded = true;
      if (drained === TIMED_OUT) {
        ctx.report(new SessionError('ERR_SESSION_DRAIN_TIMEOUT', `${this.#work.busyCount(caller)} request(s) or task(s) still running after ${ctx.options.closeTimeoutMs} ms`), 'drainTimeouts');
      }
      // Saves and closes still retrying against an absent Redis get closeTimeoutMs more, then this node
      // gives up: it leaves, and the other nodes' sweeps free and take over what it held.
      const landed = Promise.all([this.#processes.settled(), closing, this.#closer.settle(caller)]);
      if (await within(ctx.clock, ctx.options.closeTimeoutMs, landed) === TIMED_OUT) this.#node.retries.stop();
      await landed;
    } catch (error) {
      ctx.report(unavailable(error), 'storeErrors');
    } finally {
      claimsMade();
      this.#node.drainEnded = true;
      this.#node.retries.stop();
      this.#closer.stop();
      this.#requests.stop();
      this.#heartbeat.stop();
      this.#stopped = true;
      // A client the application passed in may serve stores made later: it keeps no hold on this one.
      this.#redis.off('close', this.#onClientClose).off('ready', this.#onClientReady);
      // A request that called stop() goes on after it (the stop does not wait for its caller): its
      // release still needs Redis, so the node leaves once it has ended (closeTimeoutMs at most).
      // So does a close this node runs whose hook called it (the stop does not wait for its own caller's
      // close): its teardown, after that hook, still needs Redis.
      const afterWork = caller !== undefined && (this.#work.busyCount(undefined) > 0 || this.#closer.activeCount > 0);
      const leaving = this.#leave(afterWork);
      if (afterWork) leaving.catch(() => {});
      else await leaving;
    }
  }

  joinStop(run: ProcessRun<Vars>): Promise<void> {
    const caller = run.proc;
    if (caller.sessionId !== '' && !this.#stopInsiders.has(caller.sessionId)) this.#stopInsiders.set(caller.sessionId, caller);
    return (this.#stopClaims ?? Promise.resolve()).then(() => {
      this.#closer.stopCalledInside(caller);
      return run.hook === true ? undefined : this.#closer.settle(caller);
    });
  }

  /** Leaves the cluster and closes the clients; first, if told to, waits for the work still running here and its saves. */
  async #leave(afterWork: boolean): Promise<void> {
    if (afterWork) await within(this.#ctx.clock, this.#ctx.options.closeTimeoutMs, this.#work.whenIdle(undefined).then(() => Promise.all([this.#processes.settled(), this.#closer.settle()])));
    // A last stopping beat: an option set during the stop (written after the stop's first beat took the
    // options away) goes with the last node's stop too.
    await this.#heartbeat.beat(true).catch(() => {});
    await leaveCluster(this.#redis, this.#settings, this.#node.nodeId).catch(() => {});
    await this.#closeClients(() => { this.#node.retries.ownConnectionsClosed = true; });
  }

  // ---- options and reads ------------------------------------------------------------------------------

  optionChanged(name: OptionName, value: unknown, previous: unknown): void {
    // A stopped node has left the cluster: it keeps the value to itself.
    this.#options.set(name, value, previous, !this.#stopped);
  }

  // Stopped, the node answers as a stopped memory engine does (whatever onStop left in the cluster).
  expiresAtMs(id: string): number | undefined {
    return this.#stopped ? undefined : knownExpiresAtMs(this.#known.get(id), this.#ctx);
  }

  processCount(id: string): number {
    return this.#stopped ? 0 : knownProcessCount(this.#known.get(id));
  }

  /** This node's view: the open sessions it has served (the cluster's are in Redis). */
  sessions(): SessionInfo[] {
    return this.#stopped ? [] : knownSessions(this.#known.values(), this.#turns, this.#ctx);
  }

  /** Cluster-wide counts as of the last sweep; queued requests and locks as this node sees them. */
  gauges(): StoreGauges {
    return nodeGauges(this.#known.values(), this.#turns, this.#closer, this.#stopped);
  }
}
