// What a scenario of the model-based property test is (property-support.ts runs one): its operations and
// their arbitraries, the settings, what a store's harness gives the runner (the engine, its clock, an
// Observer that says when a step's consequences have happened and where the truth is read), and the
// runner's world a harness may read.
import fc from 'fast-check';
import type { ManualClock, RequestLease, SessionEngine, SessionEngineOptions, WebProcess } from '../src/index.js';
import type { Model, Vars } from './model.js';

export const IPS = ['127.0.0.1', '127.0.0.2'] as const;
export const TIMEOUT_MS = 10_000;
export const MAX_QUEUED = 2;
export const RECORDS = 3;
export const LOCK_TABLE = 'T';

export type Op =
  | { t: 'new'; ip: 0 | 1; hold: boolean }
  | { t: 'return'; s: number; ip: 0 | 1; hold: boolean }
  | { t: 'release'; k: number }
  | { t: 'lock' | 'unlock'; k: number; rec: number }
  | { t: 'spawn'; k: number }
  | { t: 'endTask'; k: number }
  | { t: 'closeOut'; s: number }
  | { t: 'closeIn'; k: number }
  | { t: 'advance'; ms: number }
  | { t: 'cap'; n: number }
  | { t: 'timeout'; ms: number }
  | { t: 'regenerate'; k: number }
  | { t: 'perSession'; n: 1 | 2 };

const index = fc.nat({ max: 7 });
export const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ t: fc.constant('new' as const), ip: fc.constantFrom(0 as const, 1 as const), hold: fc.boolean() }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('return' as const), s: index, ip: fc.constantFrom(0 as const, 0 as const, 1 as const), hold: fc.boolean() }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('release' as const), k: index }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constantFrom('lock' as const, 'unlock' as const), k: index, rec: fc.nat({ max: RECORDS - 1 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('spawn' as const), k: index }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('endTask' as const), k: index }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('closeOut' as const), s: index }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('closeIn' as const), k: index }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('advance' as const), ms: fc.constantFrom(1_000, TIMEOUT_MS / 2, TIMEOUT_MS, 3 * TIMEOUT_MS) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('cap' as const), n: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('timeout' as const), ms: fc.constantFrom(TIMEOUT_MS / 2, TIMEOUT_MS, 2 * TIMEOUT_MS) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('regenerate' as const), k: index }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('perSession' as const), n: fc.constantFrom(1 as const, 2 as const) }) },
);

/** A scenario: up to 30 operations. */
export const scenarioArb = fc.array(opArb, { minLength: 1, maxLength: 30 });

export interface Pending {
  target: string;
  /** The refusal the model predicts, if any. */
  readonly expect?: 'ERR_SESSION_IP_MISMATCH' | 'ERR_SESSION_QUEUE_FULL';
  readonly ip: string;
  readonly hold: boolean;
  /** The model has it waiting in its session (no process free, no room for one more). */
  queued: boolean;
  /**
   * Sessions idle in the model when the store decided eviction or 503 for this request: when it arrived,
   * or, for a request queued in a session that then closed, when that session closed (it is bound anew
   * then, and a session idle at its arrival may have taken a request since).
   */
  idleAtArrival: readonly string[];
  /** Sessions in the model with work (a request running or queued, or a task) at that same moment. */
  busyAtArrival: number;
  /** maxSessions at that same moment. */
  capAtArrival: number;
  settled: boolean;
  lease?: RequestLease<Vars>;
  error?: unknown;
}

export interface Task {
  readonly proc: WebProcess<Vars>;
  /** Its session's id: changes with regenerate. */
  sessionId: string;
  readonly end: () => void;
  ended: boolean;
}

/** A closeSession() call (from outside or from a request of the session) until it resolves. */
export interface PendingClose {
  readonly sessionId: string;
  settled: boolean;
}

/** What the runner shows an observer: the model and what is still in flight. */
export interface World {
  readonly model: Model;
  readonly pendings: readonly Pending[];
  readonly tasks: readonly Task[];
  readonly closes: readonly PendingClose[];
  /** Sessions whose 'close' event came. */
  readonly closed: ReadonlySet<string>;
  /** Moves on every answer, hook and close event: a read of the store made while it moved may be stale. */
  readonly activity: number;
  /** Folds the answered requests into the model (and releases those that do not hold their process). */
  absorb(): void;
  /** The store's open sessions: the model forgets every other one (its id is dead from now on). */
  forgetClosed(open: ReadonlySet<string>): void;
}

/** How the runner observes one store. */
export interface Observer {
  /** Session time that may pass before a due timeout is acted on: 0 for timers, the sweep interval for a sweep. */
  readonly timeoutLatenessMs: number;
  /** After an operation: waits until its consequences have happened, absorbing answers meanwhile. */
  settle(world: World): Promise<void>;
  /** Waits (bounded) until `done()`; returns its last value. */
  until(done: () => boolean): Promise<boolean>;
  /** Ids of the open sessions, as the store's truth has them. */
  openIds(): Promise<ReadonlySet<string>>;
  /** Live sessions and the longest queue of one session, as the store counts them (invariant 6). */
  bounds(): Promise<{ sessions: number; longestQueue: number }>;
  /** Checks what the store keeps of sessions that closed since the last step (invariant 3). */
  checkClosed(world: World, sessionIds: readonly string[]): Promise<void>;
  /** At the end: runs `round` and `afterTurn` (with turns of the event loop between) until `stopped()` or it gives up. */
  finish(round: () => void, afterTurn: () => void, stopped: () => boolean): Promise<void>;
  /** After stop(): nothing is left (sessions, locks). */
  checkEmpty(world: World): Promise<void>;
}

/** An engine under test, its clock, and how to observe it. */
export interface Harness {
  readonly engine: SessionEngine<Vars>;
  readonly clock: ManualClock;
  readonly observer: Observer;
  /** Called once the run ended, passed or failed (stop what is still running, delete what is stored). */
  dispose(stopped: boolean): Promise<void>;
}

/** Builds an engine with these options (the factory adds the clock and the store). */
export type EngineFactory = (options: SessionEngineOptions<Vars>) => Promise<Harness>;

export interface ScenarioSettings {
  /**
   * Operations the runner does not send to this store, each with the reason: a known gap, with a todo
   * test of its own, that would fail every run that meets it and hide whatever else a run could find.
   */
  readonly avoid?: {
    /** Drops a request from another IP than the session's for a session that already has one waiting. */
    readonly mismatchWhileQueued?: string;
    /** Drops closeSession() (from outside or inside) of a session with two requests or more waiting. */
    readonly closeWithWaiters?: string;
  };
}
