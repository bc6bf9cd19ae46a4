import type { Clock } from './clock.js';
import type { SessionError } from './errors.js';
import type { LockManager, LockRef } from './locks.js';
import type { OptionName, RuntimeOptions } from './options.js';
import type { SessionVars, WebProcess } from './process.js';
import type { CloseReason } from './session.js';
import type { SessionStore } from './store.js';

/** Options of `new SessionEngine(options)`: the run-time options plus the parts fixed at construction. */
export interface SessionEngineOptions<Vars extends SessionVars = Record<string, unknown>> extends Partial<RuntimeOptions> {
  /** Time source for every decision; tests pass a `ManualClock`. @default systemClock */
  clock?: Clock;
  /**
   * Record lock manager shared by the engine's processes (memory store only: a shared store brings its
   * own). @default a `MemoryLockManager` on the engine's clock (`lockedBy().sinceMs` in `clock` time);
   * one shared by several engines: `new MemoryLockManager(() => clock.now())`.
   */
  locks?: LockManager;
  /** Where sessions live: `memoryStore()` or `createRedisStore()` from `legacy-web-sessions/redis`. @default memoryStore() */
  store?: SessionStore;
  /** 4D's Compiler_Web: the variables of a new process (new session, extra parallel process, spawned task). @default () => ({}) */
  init?(proc: WebProcess<Vars>): Vars | Promise<Vars>;
  /**
   * 4D's On Web Legacy Close Session: runs once per process of a closing session, context intact, awaited
   * and bounded by `closeTimeoutMs`. Never runs in `'scalable'` or `'none'` mode. A throw is reported on
   * `'error'` and never stops the teardown.
   */
  onClose?(proc: WebProcess<Vars>, reason: CloseReason): void | Promise<void>;
}

/** What `sessions()` tells about one live session. */
export interface SessionInfo {
  readonly id: string;
  readonly ip: string;
  readonly createdAt: Date;
  /** End of the last request (start of the current idle period). */
  readonly lastActivityAt: Date;
  /** When the cookie expires: last request + `inactiveSessionTimeoutMs` as it was then (or lower since). */
  readonly expiresAt: Date;
  readonly processCount: number;
  /** A request is running or queued, or a spawned task runs. */
  readonly busy: boolean;
  /** Requests waiting for a process (on Redis: on this node). */
  readonly queuedRequests: number;
  /** Record locks its processes hold (on Redis: those running on this node; an idle session's show as none). */
  readonly locks: LockRef[];
}

/** Counters (since construction) and gauges (now). */
export interface EngineStats {
  /** Open sessions. */
  readonly sessions: number;
  readonly idleSessions: number;
  readonly busySessions: number;
  /** Sessions whose close pipeline is still running. */
  readonly closingSessions: number;
  /** Processes counted against `maxConcurrentProcesses`. */
  readonly processes: number;
  /** Requests waiting for a process (on Redis: those waiting on this node). */
  readonly queuedRequests: number;
  /** Record locks held by processes of open sessions (on Redis: by the processes running on this node). */
  readonly locksHeld: number;
  readonly created: number;
  readonly closed: Readonly<Record<CloseReason, number>>;
  /** Requests refused, by cause (each answered 503, or 400 for `ipMismatch`); `processLimit` also counts a `spawn` refused at `maxConcurrentProcesses`. */
  readonly rejected: Readonly<{ sessionLimit: number; processLimit: number; queueFull: number; queueTimeout: number; stopped: number; ipMismatch: number; storeUnavailable: number }>;
  readonly hookErrors: number;
  readonly hookTimeouts: number;
  readonly drainTimeouts: number;
  /**
   * Request handlers that failed, `init` calls that failed for a request's new process, and event
   * listeners ('create', 'close', 'option', or Node's own events) that threw or rejected.
   */
  readonly handlerErrors: number;
  readonly taskErrors: number;
  /** A shared store failed a command, or a process's state could not be stored (reported on `'error'`). */
  readonly storeErrors: number;
}

export interface CreateEvent {
  readonly sessionId: string;
  readonly ip: string;
}

export interface CloseEvent {
  readonly sessionId: string;
  readonly reason: CloseReason;
  readonly processCount: number;
  /** `onClose` calls due in this close: `processCount` in 'legacy' mode with a hook, else 0. */
  readonly hooksRun: number;
  /** Hooks that threw, timed out, or could not run (Redis store: a saved state that cannot be read). */
  readonly hookFailures: number;
  /** From the start of the close to the end of the teardown. */
  readonly durationMs: number;
}

export interface OptionEvent {
  readonly name: OptionName;
  readonly value: unknown;
}

/** The engine's events and their payloads. */
export interface SessionEngineEvents {
  create: (event: CreateEvent) => void;
  close: (event: CloseEvent) => void;
  error: (error: SessionError) => void;
  option: (event: OptionEvent) => void;
}
