import { noteProgress } from './close.js';
import { SessionError } from './errors.js';
import type { RequestLease } from './lease.js';
import { whenReady, type MaybePromise } from './maybe-async.js';
import { taskFailure, taskRefused, WebProcess, type SessionVars } from './process.js';
import { runAs, runInit } from './runs.js';
import type { SchedulerContext } from './scheduler.js';
import { byFirstWaiter, freeRequestProcess, runningRequestCount, withItem, withoutItem, type Session } from './session.js';
import { initFailure, tearDown } from './store.js';

/** What the processes need of the scheduler that owns their sessions. */
export interface ProcessesHost<Vars extends SessionVars> {
  /** Marks the session busy and hands `proc` to a new request (or task). */
  start(session: Session<Vars>, proc: WebProcess<Vars>, isNewSession?: boolean): RequestLease<Vars>;
  /** The session may have no work left: idle again, its expiry armed. */
  settleIfIdle(session: Session<Vars>): void;
  /** Counts a refusal in the stats and returns its error. */
  reject(cause: 'processLimit', error: SessionError): SessionError;
}

/**
 * The processes of the open sessions, from their start (a request process with its `init`, a spawned
 * task) to their end, and how many are live against maxConcurrentProcesses ('none'-mode requests count
 * too). A closing session's processes are the close pipeline's: they stop counting when it detaches.
 */
export class SessionProcesses<Vars extends SessionVars> {
  readonly #ctx: SchedulerContext<Vars>;
  readonly #host: ProcessesHost<Vars>;
  #live = 0;
  /** Sessions with requests waiting that could each have a process of their own but for maxConcurrentProcesses. */
  readonly #waitingForRoom = new Set<Session<Vars>>();
  #admitScheduled = false;

  constructor(ctx: SchedulerContext<Vars>, host: ProcessesHost<Vars>) {
    this.#ctx = ctx;
    this.#host = host;
  }

  /** Processes counted against maxConcurrentProcesses. */
  get live(): number {
    return this.#live;
  }

  /** One more process fits under maxConcurrentProcesses. */
  get hasRoom(): boolean {
    return this.#live < this.#ctx.options.maxConcurrentProcesses;
  }

  /** A 'none'-mode request's process starts (+1) or ends (-1). */
  countTransient(delta: 1 | -1): void {
    this.#live += delta;
    if (delta < 0) this.#placesFreed();
  }

  /** The session leaves the open sessions (closing, or discarded): its processes stop counting. */
  uncount(session: Session<Vars>): void {
    this.#live -= session.processes.length;
    this.#waitingForRoom.delete(session);
    if (session.processes.length > 0) this.#placesFreed();
  }

  /** A request of the session queued only because maxConcurrentProcesses is reached: it gets a place once one is free. */
  waitForRoom(session: Session<Vars>): void {
    this.#waitingForRoom.add(session);
  }

  /**
   * Places were given back: the sessions waiting for room get them, on a microtask (not inside the
   * close step or task end that freed them). Nothing to do, and no cost, when none waits.
   */
  #placesFreed(): void {
    if (this.#waitingForRoom.size === 0 || this.#admitScheduled) return;
    this.#admitScheduled = true;
    queueMicrotask(() => {
      this.#admitScheduled = false;
      // In the order their requests began to wait (first come first served).
      const waiting = byFirstWaiter(this.#waitingForRoom);
      this.#waitingForRoom.clear();
      this.admitWaiters(waiting);
    });
  }

  /** A new request process for the session, its vars from `init`: the lease at once when init is synchronous. */
  startRequestProcess(session: Session<Vars>, isNewSession: boolean): MaybePromise<RequestLease<Vars>> {
    const proc = this.#add(session, 'web');
    session.requestProcessCount++;
    const lease = this.#host.start(session, proc, isNewSession);
    let vars: MaybePromise<Vars>;
    try {
      vars = this.initVars(proc);
    } catch (error) {
      // Synchronous: no request waits in the session, or admitWaiters, which called this, goes on itself.
      return this.#initFailed(session, proc, error, false);
    }
    // The failure's promise is flattened by the `then` whenReady makes.
    return whenReady<Vars, MaybePromise<RequestLease<Vars>>>(vars, (resolved) => {
      // Its session's close stopped waiting for it (init outlasted closeTimeoutMs): no request runs in a
      // process whose hook has begun or whose teardown is done, nor do init's vars come into it.
      if (proc.closed || session.pastDrain) throw new SessionError('ERR_SESSION_CLOSED', 'its session closed while init ran', { sessionId: session.id });
      proc.vars = resolved;
      return lease;
    }, (error: unknown) => this.#initFailed(session, proc, error, !isNewSession)) as MaybePromise<RequestLease<Vars>>;
  }

  /**
   * An option raised the room (processesPerSession or maxConcurrentProcesses): every session's waiting
   * requests may take it, in the order they began to wait (first come first served, as for a place
   * given back), whatever they waited for until then (a place, or their session's processes).
   */
  admitAll(sessions: Iterable<Session<Vars>>): void {
    this.#waitingForRoom.clear();
    const waiting: Session<Vars>[] = [];
    for (const session of sessions) if (session.queuedCount > 0) waiting.push(session);
    this.admitWaiters(byFirstWaiter(waiting));
  }

  /**
   * Room for more request processes was made (processesPerSession or maxConcurrentProcesses raised): the
   * requests waiting in each session take it, first come first served, instead of waiting for a release.
   */
  admitWaiters(sessions: Iterable<Session<Vars>>): void {
    const options = this.#ctx.options;
    for (const session of sessions) {
      // A request process kept over a lowered processesPerSession is free again once it is raised back:
      // the waiting requests take it first (FIFO), as they would at a release.
      while (session.state === 'open' && session.queuedCount > 0 && runningRequestCount(session) < options.processesPerSession) {
        const free = freeRequestProcess(session);
        if (free === undefined) break;
        session.running = withItem(session.running, free);
        session.queue!.shift()!.resolve(free);
      }
      while (session.state === 'open' && session.queuedCount > 0 && session.requestProcessCount < options.processesPerSession && this.hasRoom) {
        const next = session.queue!.shift()!;
        // startRequestProcess fails only with a SessionError: ERR_SESSION_INIT_FAILED, or ERR_SESSION_CLOSED
        // when the session's close stopped waiting for init.
        const failed = (error: unknown): void => next.reject(error as SessionError);
        let started: MaybePromise<RequestLease<Vars>>;
        try {
          started = this.startRequestProcess(session, false);
        } catch (error) {
          failed(error);
          continue;
        }
        // The waiter makes its own lease for the process (its continuation checks the session is open).
        void whenReady(started, (lease) => next.resolve(lease.proc), failed);
      }
      if (session.state === 'open' && session.queuedCount > 0 && session.requestProcessCount < options.processesPerSession) this.#waitingForRoom.add(session);
    }
  }

  /** `init`'s vars for a new process, run in its context. */
  initVars(proc: WebProcess<Vars>): MaybePromise<Vars> {
    return runInit(this.#ctx.init, this.#ctx.als, proc);
  }

  /** `proc.spawn(name, task)`: a process of its own in the session, running `task` in its context. */
  spawn(session: Session<Vars>, name: string, task: (proc: WebProcess<Vars>) => Promise<void>): WebProcess<Vars> {
    if (session.state !== 'open') throw new SessionError('ERR_SESSION_CLOSED', `cannot spawn "${name}"`, { sessionId: session.id });
    if (!this.hasRoom) {
      throw this.#host.reject('processLimit', new SessionError('ERR_SESSION_PROCESS_LIMIT', `cannot spawn "${name}"`, { sessionId: session.id }));
    }
    const proc = this.#add(session, name);
    this.#host.start(session, proc);
    void this.#runTask(session, proc, task);
    return proc;
  }

  /** Throws, or rejects once the record locks init took are given back (the caller's retry may need them). */
  #initFailed(session: Session<Vars>, proc: WebProcess<Vars>, error: unknown, admitWaiting: boolean): Promise<never> {
    // The process never had a context: it leaves the session (the next request runs init again). In a
    // session closing meanwhile too: its close neither waits for it nor hooks it (a hook would see no
    // context), and its place was given back when the close was claimed; unless the close's hooks have
    // begun (it gave up waiting at closeTimeoutMs), which then hook it and tear it down (leaveClosing).
    let left = true;
    if (session.state === 'open') {
      this.#drop(session, proc);
      // The request ended here: the session's idle time counts from now, as after any request. Left at
      // an earlier request's end, it would go to the tail of the idle list (ordered by last activity)
      // with an earlier time than sessions ahead of it: timed out late, and not the one evicted first.
      session.lastActivityAtMs = this.#ctx.clock.now();
    } else left = leaveClosing(session, proc);
    session.requestProcessCount--;
    // Once its closing session's hooks have begun, the close hooks it and tears it down with the others.
    const released = left ? tearDown(this.#ctx, proc) : undefined;
    this.#host.settleIfIdle(session);
    // Its place in the session is free again: a request waiting behind it takes it (as after a
    // processesPerSession raise), not only when another request of the session ends; but its place under
    // maxConcurrentProcesses goes first to the requests of other sessions that began to wait for one
    // before (first come first served): the session gets in line, and the places freed go in that order
    // (on the microtask #drop scheduled, or this one). A new session's first process is the scheduler's to
    // discard (its queued requests move on from there).
    if (admitWaiting && session.state === 'open' && session.queuedCount > 0) {
      this.#waitingForRoom.add(session);
      this.#placesFreed();
    }
    const failure = initFailure(this.#ctx, error, session.id);
    if (released === undefined) throw failure;
    return released.then(() => { throw failure; });
  }

  async #runTask(session: Session<Vars>, proc: WebProcess<Vars>, task: (proc: WebProcess<Vars>) => Promise<void>): Promise<void> {
    let initialized = false;
    try {
      const vars = await this.initVars(proc);
      // Its session's close stopped waiting for init (closeTimeoutMs): it hooks the process or tore it down.
      if (proc.closed || session.pastDrain) this.#ctx.report(taskRefused(proc, session.id), 'taskErrors');
      else {
        proc.vars = vars;
        initialized = true;
        await runAs(this.#ctx.als, proc, () => task(proc));
      }
    } catch (error) {
      this.#ctx.report(taskFailure(initialized, proc, error, session.id), 'taskErrors');
    }
    if (session.state !== 'open') {
      if (initialized) {
        session.running = withoutItem(session.running, proc);
        return noteProgress(session); // the close pipeline hooks and tears it down
      }
      // Its init failed: it never had a context (as a request's process whose init failed). Once the
      // hooks have begun it is theirs to hook and tear down, as any process of the session.
      if (leaveClosing(session, proc)) await tearDown(this.#ctx, proc);
      return;
    }
    // A task that ends on its own ends its process: no hook (its session is not closing), locks released.
    this.#drop(session, proc);
    session.lastActivityAtMs = this.#ctx.clock.now();
    this.#host.settleIfIdle(session);
    await tearDown(this.#ctx, proc);
  }

  #add(session: Session<Vars>, name: string): WebProcess<Vars> {
    const proc = new WebProcess<Vars>(session, name, {} as Vars);
    session.processes = withItem(session.processes, proc);
    this.#live++;
    return proc;
  }

  /** A process leaves its open session (a closing session's processes are the pipeline's: leaveClosing). */
  #drop(session: Session<Vars>, proc: WebProcess<Vars>): void {
    session.running = withoutItem(session.running, proc);
    session.processes = withoutItem(session.processes, proc);
    this.#live--;
    this.#placesFreed();
  }
}

/**
 * A process whose init failed leaves its closing session: the close neither waits for it nor hooks it
 * (a hook would see no context; its place stopped counting at the claim). Once the hooks have begun
 * (the drain gave up on it at closeTimeoutMs) it stays in their list, which is not copied: taking it
 * out would make the pipeline skip the next process's hook. Returns whether it left.
 */
function leaveClosing<Vars extends SessionVars>(session: Session<Vars>, proc: WebProcess<Vars>): boolean {
  session.running = withoutItem(session.running, proc);
  const left = !session.pastDrain;
  if (left) session.processes = withoutItem(session.processes, proc);
  noteProgress(session);
  return left;
}
