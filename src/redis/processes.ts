import { SessionError } from '../errors.js';
import type { LockRef } from '../locks.js';
import type { WebProcess, SessionVars } from '../process.js';
import { runInit } from '../runs.js';
import { keyTtlMs, text, unavailable, type NodeServices, type SessionHandle } from './node.js';
import { ScriptBatches } from './batches.js';
import { flushWrites } from './coalesce.js';
import { sessionLeftRedis } from './node-keys.js';
import { emptyContext, savedBeforeWithHeldLocks, saveProcess } from './state.js';
import { RedisTasks } from './tasks.js';
import { ProcessTeardowns } from './teardowns.js';

/**
 * What a release does with its process besides freeing it: `'stays'` in its session; `'leaves'` its open
 * session (a task that ended, an init that failed); `'leavesWithSession'`: leaves, and its session goes
 * too, with any task init spawned (a new session whose first init failed: its id reached no client).
 */
export type ProcessEnd = 'stays' | 'leaves' | 'leavesWithSession';
const END_ARG: Record<ProcessEnd, string> = { stays: '0', leaves: '1', leavesWithSession: '2' };

/**
 * A node's writes of process state: a request's or task's end saves its process (fenced by its token)
 * and frees it; spawned tasks register their process first. Saves run after the response and are
 * tracked, so a stopping node waits for them.
 */
export class ProcessSaves<Vars extends SessionVars> {
  readonly #node: NodeServices<Vars>;
  readonly #afterSave: (handle: SessionHandle<Vars>) => void;
  readonly #onSettled: () => void;
  readonly #pending = new Set<Promise<unknown>>();
  /** Processes with releases or a spawn on their way to Redis, and how many (the repair must not free them meanwhile). */
  readonly #writing = new Map<string, number>();
  /** The releases of one turn of the event loop go to Redis in one call (as the enters do: enters.ts). */
  readonly #releases: ScriptBatches<string>;
  readonly #tasks: RedisTasks<Vars>;
  readonly #teardowns: ProcessTeardowns<Vars>;

  /** `afterSave`: a process of the session is free again; `onSettled`: a tracked write is over. */
  constructor(node: NodeServices<Vars>, afterSave: (handle: SessionHandle<Vars>) => void, onSettled: () => void) {
    this.#node = node;
    this.#afterSave = afterSave;
    this.#onSettled = onSettled;
    // 'pid token now end', id, state ('' for none) per release; at most 128 per call (a script
    // blocks Redis while it runs) and 64 MiB of them (Redis takes 1 GB per client request at most).
    // Fewer arguments: each costs its encoding on both sides.
    // Sent from the check phase: what the turn holds leaves now, not a turn later (coalesce.ts).
    this.#releases = new ScriptBatches<string>(3, 128, (count, items) => {
      const sent = node.redis.lwsRelease(node.settings.prefix, count, node.nodeId, keyTtlMs(node.ctx, node.settings), ...items);
      flushWrites(node.redis);
      return sent;
    }, 64 * 1024 * 1024);
    this.#tasks = new RedisTasks(node, this);
    this.#teardowns = new ProcessTeardowns(node, (write) => this.track(write));
  }

  get pendingCount(): number {
    return this.#pending.size;
  }

  /**
   * Keeps a write in the set a stop waits for; `after` runs once it has settled, before the stop hears
   * of it. One reaction for both (each promise a request makes also pays Node 20's async hooks).
   */
  track(write: Promise<unknown>, after?: () => void): void {
    const settle = (): void => {
      try {
        after?.();
      } finally {
        this.#pending.delete(tracked);
        this.#onSettled();
      }
    };
    // A rejection goes on as it did (unhandled unless the caller's write handled it): not swallowed here.
    const tracked: Promise<unknown> = write.then(settle, (error: unknown) => {
      settle();
      throw error;
    });
    this.#pending.add(tracked);
  }

  writingPids(): string[] {
    return [...this.#writing.keys()];
  }

  /** A write of `pid` is on its way to Redis (a release, a spawn): the repair must not free it meanwhile. */
  writeBegins(pid: string): void {
    this.#writing.set(pid, (this.#writing.get(pid) ?? 0) + 1);
  }

  writeEnds(pid: string): void {
    const left = (this.#writing.get(pid) ?? 1) - 1;
    if (left > 0) this.#writing.set(pid, left);
    else this.#writing.delete(pid);
  }

  settled(): Promise<unknown> {
    return Promise.allSettled([...this.#pending, ...this.#endsAfterClose]);
  }

  /** Work a stop waits for before it leaves (its clients still up), not counted as busy by the drain: see close-ends.ts handedOverEnded. */
  readonly #endsAfterClose = new Set<Promise<unknown>>();

  trackAfterClose(work: Promise<unknown>): void {
    const tracked = work.finally(() => this.#endsAfterClose.delete(tracked));
    this.#endsAfterClose.add(tracked);
  }

  initVars(proc: WebProcess<Vars>): Vars | Promise<Vars> {
    return runInit(this.#node.ctx.init, this.#node.ctx.als, proc);
  }

  /**
   * Writes a process's state back and frees it (`end`: whether the process leaves its open session).
   * A stale token writes nothing: the session closed meanwhile, and nothing comes back to life. A value
   * that cannot be stored is reported and the state last saved is kept. `loaded`: a request's, the state
   * it started from; a state that did not change is not sent again (a read-only request writes no
   * state), and what Redis holds afterwards is kept as this node's copy (StateCopies).
   */
  save(handle: SessionHandle<Vars>, proc: WebProcess<Vars>, token: string, state: WebProcess<Vars> | undefined, end: ProcessEnd, loaded?: Buffer, answered?: () => void): void {
    const { ctx, copies } = this.#node;
    let bytes: Buffer | undefined;
    if (state !== undefined) {
      try {
        bytes = saveProcess(state, loaded, this.#node.settings.maxStateBytes);
      } catch (error) {
        ctx.report(error as SessionError, 'storeErrors');
        bytes = savedBeforeWithHeldLocks(loaded, state);
        // A task never saved before that leaves: '' would tell RELEASE its init failed (no context), and a
        // session closing in Redis meanwhile would not hook it. It leaves with an empty context instead.
        if (bytes === undefined && end === 'leaves' && (loaded === undefined || loaded.length === 0)) bytes = emptyContext(state);
      }
    }
    // What the process holds in Redis once this lands: the new state, or the one it started from (a
    // buffer from a reply may be a slice of a larger read: the copy owns its bytes). Kept as this node's
    // copy only once the release has landed in the open session: until then the process may have been
    // freed under it (its node thought dead, its process freed by a sweep without moving tk), and an
    // enter that finds it free must not start from bytes Redis never held.
    const held = loaded === undefined || state === undefined || end !== 'stays' ? undefined
      : bytes ?? (copies.get(handle.id)?.bytes === loaded ? loaded : Buffer.from(loaded));
    this.track(this.#release(handle, proc, token, bytes, end, held, answered), () => this.#afterSave(handle));
  }

  /**
   * The process stays taken in Redis until its release lands: retried while Redis is away (the token
   * makes a repeat harmless), reported once; given up only when this node stops (others then free it).
   */
  async #release(handle: SessionHandle<Vars>, proc: WebProcess<Vars>, token: string, bytes: Buffer | undefined, end: ProcessEnd, held: Buffer | undefined, answered?: () => void): Promise<void> {
    const { ctx, settings, copies } = this.#node;
    // One async layer (each promise also pays Node 20's async hooks): the write is kept from here to its end.
    this.writeBegins(proc.processId);
    let outcome: string | undefined;
    let handleIdAtSend = handle.id;
    try {
      if (handle.renaming !== undefined) await handle.renaming;
      for (let attempt = 0; ; attempt++) {
        try {
          handleIdAtSend = handle.id;
          const args = [`${proc.processId} ${token} ${ctx.clock.now()} ${END_ARG[end]}`, handle.id, bytes ?? ''];
          outcome = text(await this.#releases.add(args));
          const unsure = handle.unsureRenames?.get(proc.processId);
          // A rename of its own may have run, its reply lost: then the session lives under that fresh id.
          for (let i = (unsure?.length ?? 0) - 1; outcome === 'gone' && i >= 0; i--) outcome = text(await this.#releases.add([args[0]!, unsure![i]!, args[2]!]));
          // Its own error in Redis (the others of its call landed): retried as a failed call is.
          if (outcome.startsWith('err')) throw new Error(`the release failed in Redis: ${outcome.slice(4)}`);
          handle.unsureRenames?.delete(proc.processId);
          if (outcome === 'o' && unsure === undefined && held !== undefined && held.length > 0) copies.set(handle.id, { pid: proc.processId, token, bytes: held });
          // Fenced on its first try: the process was freed under this work (this node taken for dead), so
          // what it changed is lost. A retry's 'stale' says nothing: the try before may have landed.
          if (outcome === 'stale' && attempt === 0) {
            // Its lock calls are refused from now on, and its teardown frees nothing: the process id's
            // locks may be the run's that has the process now (the fence in Redis told it already).
            this.#node.fencedRuns.add(proc);
            ctx.report(new SessionError('ERR_SESSION_WRITE_FENCED', `${proc.processId}`, { sessionId: handle.id }), 'storeErrors');
          }
          break;
        } catch (error) {
          // A node that has stopped and closed its own connections has no Redis to report as away.
          if (attempt === 0 && !this.#node.retries.ownConnectionsClosed) ctx.report(unavailable(error, handle.id), 'storeErrors');
          answered?.();
          if (this.#node.retries.stopped) return;
          await this.#node.retries.wait(attempt);
        }
      }
      answered?.();
    } finally {
      this.writeEnds(proc.processId);
    }
    // A live session's locks outlive its idle time: a release that lands in the open session renews them
    // with its key, in the script (process-scripts.ts RELEASE). Not after 'gone': the id this node knows
    // names nothing, which says the session closed (its close released its locks) but may also say it was
    // renamed on a node this release never heard from, its process there now; that node's own releases
    // keep its locks alive. Freeing them here could take a live session's locks.
    // 'gone' from a session that has left Redis (seen closing here, or asked: the message may have been
    // lost): its close finished (FINISH freed the locks its processes held then). A lock this process
    // took after that (a request the drain gave up on, an init that ended during the hooks) would
    // outlive the session by a key lifetime: freed here. lwsLeft follows renames, so a session that
    // lives on under a new id keeps them.
    // An open handle whose release finds the session gone missed (or forgot) its close: asked, and finished
    // if so (its other work torn down, the handle dropped by afterSave, not listed open for good).
    // Only once no other work of it runs here: lwsLeft cannot follow a rename this node missed whose
    // P mv:<old> has expired (or was never written), and live work must not be torn down on that guess.
    let left: boolean | undefined;
    if (outcome === 'gone' && handle.state === 'open' && handle.id === handleIdAtSend) {
      left = await sessionLeftRedis(this.#node.redis, settings, handle.id);
      if (left === true && handle.idleHere && handle.state === 'open') handle.finished();
    }
    if (outcome === 'gone' && proc.lockCount > 0 && !proc.closed && (handle.state !== 'open' || left === true)) {
      await this.tearDown(proc);
    }
  }

  /**
   * A logout from a request whose close another node runs, waiting for this very request: the request's
   * state is saved and its process freed now, so that close hooks it as the logout left it and ends (4D
   * runs the close in the calling process); the run stays (a stop drains it; the close's end tears it
   * down) and its end saves nothing. False for a task, or a run handed over already.
   */
  handOver(handle: SessionHandle<Vars>, proc: WebProcess<Vars>): boolean {
    // The request may run under a companion of the handle (a rename this node heard of late): it is saved under that one.
    const owner = handle.runs.has(proc) ? handle : [...handle.companions].find((companion) => companion.runs.has(proc)) ?? handle;
    const run = owner.runs.get(proc);
    if (run === undefined || run.kind !== 'request') return false;
    if (run.handedOver === true) return true; // a second logout of the request: it waits for that close too
    run.handedOver = true;
    this.save(owner, proc, run.token, proc, 'stays', run.loaded);
    return true;
  }

  /** A process leaves without a close: teardowns.ts. */
  tearDown(proc: WebProcess<Vars>): Promise<void> {
    return this.#teardowns.tearDown(proc);
  }

  /** Locks a process took while it was torn down: teardowns.ts. */
  giveBack(proc: WebProcess<Vars>, refs: LockRef[]): Promise<void> {
    return this.#teardowns.giveBack(proc, refs);
  }

  /** `proc.spawn` on this node: tasks.ts. */
  spawn(handle: SessionHandle<Vars>, name: string, task: (proc: WebProcess<Vars>) => Promise<void>): WebProcess<Vars> {
    return this.#tasks.spawn(handle, name, task);
  }
}
