import type { SessionVars, WebProcess } from './process.js';
import type { ProcessRun } from './runs.js';

/** What the close of one session waits for now, on this node (the store answers, see CloseWaits). */
export interface CloseBlockers<Vars extends SessionVars> {
  /** The processes whose runs the close waits for. */
  readonly processes: Iterable<WebProcess<Vars>>;
  /** Whether those runs are their hooks (the close runs its hooks) or their requests and tasks (it drains them). */
  readonly hooks: boolean;
}

/** One run awaiting the close of a session: a request, a task or a hook of `proc`. */
interface Wait<Vars extends SessionVars> {
  readonly proc: WebProcess<Vars>;
  readonly hook: boolean;
  readonly targetId: string;
  /** The run that awaits: once it is over (a request released, a task or hook settled) it waits for nothing. */
  readonly run: ProcessRun<Vars>;
  /** Ends the wait now: the caller's promise resolves `true` (the session is closing, its id dead). */
  readonly release: () => void;
}

/** The wait a chained `then` hands on to the promise it derives (set only while that one is made). */
let carried: (() => void) | undefined;

/**
 * closeSession's promise for a call made from a request, task or hook. Its `then` is how the engine
 * learns that the caller awaits it: only an awaited close can hold its caller, so only it is a wait.
 * `await p`, `Promise.all([p])` and `Promise.resolve(p)` call `then` from a later microtask (a job V8
 * queues for a thenable); a handler chained at the call, `closeSession(x).then(log, ignore)` or
 * `.catch(log)` (how a close is started and left to run, its outcome logged), calls it in the same turn,
 * and so does a `.catch` with no result to wait for. Those take no wait: the promise they derive carries
 * it, which starts if that one is awaited (`await closeSession(x).then(f)`), or this one later. A
 * close started and left alone never calls `then`. A promise's resolving function given at the call (a
 * wrapper: `new Promise((res, rej) => p.then(res, rej))`) is a wait. Other derived promises are plain
 * ones (species).
 */
class AwaitedClose extends Promise<boolean> {
  static override get [Symbol.species](): PromiseConstructor {
    return carried === undefined ? Promise : AwaitedClose as unknown as PromiseConstructor;
  }

  #onAwait: (() => void) | undefined;
  /** Made in this turn: a `then` now is chained at the call, not an await (cleared by a microtask). */
  #atCall = true;
  /** In a `finally` call: its then() is given functions of its own, built in and unnamed, and is a chain. */
  #finally = false;

  constructor(executor: (resolve: (closed: boolean) => void, reject: (error: unknown) => void) => void, onAwait?: () => void) {
    super(executor);
    this.#onAwait = onAwait ?? carried;
    carried = undefined;
    if (this.#onAwait !== undefined) queueMicrotask(() => { this.#atCall = false; });
  }

  override then<Fulfilled = boolean, Rejected = never>(
    onFulfilled?: ((closed: boolean) => Fulfilled | PromiseLike<Fulfilled>) | null,
    onRejected?: ((reason: unknown) => Rejected | PromiseLike<Rejected>) | null,
  ): Promise<Fulfilled | Rejected> {
    const onAwait = this.#onAwait;
    if (onAwait === undefined) return super.then(onFulfilled, onRejected);
    if (typeof onFulfilled === 'function' && (!this.#atCall || (!this.#finally && isBuiltIn(onFulfilled)))) {
      this.#onAwait = undefined;
      onAwait();
      return super.then(onFulfilled, onRejected);
    }
    // Kept here too: `p.catch(log); await p` awaits it.
    carried = onAwait;
    try {
      return super.then(onFulfilled, onRejected);
    } finally {
      carried = undefined;
    }
  }

  override finally(onFinally?: (() => void) | null): Promise<boolean> {
    this.#finally = true;
    try {
      return super.finally(onFinally);
    } finally {
      this.#finally = false;
    }
  }
}

/**
 * A promise's own resolving function (`new Promise((resolve, reject) => p.then(resolve, reject))`, as
 * timeout and retry helpers wrap a promise): a then() given it at the call passes the outcome on to a
 * promise someone awaits, so it is a wait, where a handler of the application's (`.then(log)`) is not.
 */
function isBuiltIn(fn: (...args: never[]) => unknown): boolean {
  return fn.name === '' && Function.prototype.toString.call(fn).endsWith('{ [native code] }');
}

/**
 * The waits of runs on the closes of sessions, to break their cycles ("log out my other devices"
 * clicked on two devices at once: each request awaits the close of the other's session, whose drain
 * waits for that other request). A close waits for its session's running requests and tasks, then for
 * its hooks (`CloseBlockers`); a run awaiting a close waits for that close. A wait that closes a cycle
 * ends at once: the caller's `closeSession` resolves `true` (the id is dead already; 4D's command does
 * not wait for a close under way either), its run goes on and ends, and the cycle's closes follow in turn,
 * each hook seeing its context as its last request left it. Without this, each close of the cycle waited
 * `closeTimeoutMs`, then hooked a request still in its handler.
 *
 * Cycles are found where a wait appears: when a run awaits (`then`), and when a close starts after the
 * runs awaiting it did (the Redis store's claim takes a round trip). Only what this node runs is seen: a
 * cycle through another node's requests waits `closeTimeoutMs`, as before.
 */
export class CloseWaits<Vars extends SessionVars> {
  readonly #blockersOf: (sessionId: string) => CloseBlockers<Vars> | undefined;
  readonly #byProcess = new Map<WebProcess<Vars>, Wait<Vars>[]>();

  constructor(blockersOf: (sessionId: string) => CloseBlockers<Vars> | undefined) {
    this.#blockersOf = blockersOf;
  }

  /** How many runs await a close now (a gauge for tests and stats). */
  get size(): number {
    let count = 0;
    for (const waits of this.#byProcess.values()) count += waits.length;
    return count;
  }

  /**
   * `closing` as the caller's promise: when the caller (a run of `proc`, a hook if `hook`) awaits it, its
   * wait on `targetId` is recorded until the close ends, and ended at once if it closes a cycle. `run` is the
   * caller's run (a request, task or hook of its process; none from outside): an await it gave up on
   * (Promise.race) holds nothing once it is over, though its process runs a later request of the session.
   */
  watch(closing: Promise<boolean>, run: ProcessRun<Vars> | undefined, targetId: string): Promise<boolean> {
    if (run === undefined) return closing;
    const { proc } = run;
    const hook = run.hook === true;
    let settled = false;
    let wait: Wait<Vars> | undefined;
    let resolveWith!: (closed: boolean) => void;
    let rejectWith!: (error: unknown) => void;
    const end = (): void => {
      settled = true;
      if (wait !== undefined) this.#remove(wait);
    };
    const awaited = new AwaitedClose((resolve, reject) => { resolveWith = resolve; rejectWith = reject; }, () => {
      if (settled || wait !== undefined || run.released) return;
      wait = { proc, hook, targetId, run, release: () => { end(); resolveWith(true); } };
      this.#add(wait);
      if (this.#closesCycle(wait)) wait.release();
    });
    closing.then((closed) => { end(); resolveWith(closed); }, (error: unknown) => { end(); rejectWith(error); });
    return awaited;
  }

  /** The close of `sessionId` has started here: a run that awaited it before may now close a cycle. */
  closeStarted(sessionId: string): void {
    if (this.#byProcess.size === 0) return;
    for (const waits of [...this.#byProcess.values()]) {
      for (const wait of waits) if (wait.targetId === sessionId && this.#closesCycle(wait)) wait.release();
    }
  }

  /** Whether, following what each close waits for and what each run awaits, `wait` leads back to its own run. */
  #closesCycle(wait: Wait<Vars>): boolean {
    const seen = new Set<string>();
    const toVisit = [wait.targetId];
    for (let id = toVisit.pop(); id !== undefined; id = toVisit.pop()) {
      if (seen.has(id)) continue;
      seen.add(id);
      const blockers = this.#blockersOf(id);
      if (blockers === undefined) continue;
      for (const proc of blockers.processes) {
        if (proc === wait.proc && blockers.hooks === wait.hook) return true;
        for (const next of this.#byProcess.get(proc) ?? []) if (next.hook === blockers.hooks && !next.run.released) toVisit.push(next.targetId);
      }
    }
    return false;
  }

  #add(wait: Wait<Vars>): void {
    const waits = this.#byProcess.get(wait.proc);
    if (waits === undefined) this.#byProcess.set(wait.proc, [wait]);
    else waits.push(wait);
  }

  #remove(wait: Wait<Vars>): void {
    const waits = this.#byProcess.get(wait.proc);
    if (waits === undefined) return;
    const index = waits.indexOf(wait);
    if (index >= 0) waits.splice(index, 1);
    if (waits.length === 0) this.#byProcess.delete(wait.proc);
  }
}
