import { SessionError } from './errors.js';
import type { MemoryStore } from './memory-store.js';
import type { RuntimeOptions } from './options.js';
import type { SessionVars } from './process.js';
import type { Session } from './session.js';
import type { Counters } from './stats.js';

/** What making room for a new session needs of the scheduler that owns the sessions. */
export interface RoomHost<Vars extends SessionVars> {
  readonly store: MemoryStore<Vars>;
  readonly processes: { readonly live: number; readonly hasRoom: boolean };
  readonly options: Pick<RuntimeOptions, 'maxConcurrentProcesses'>;
  /** Closes an idle session with 'evicted' (not awaited: a newcomer never waits for another session's hook). */
  evict(session: Session<Vars>): void;
  /** Counts a refused request under `cause` and gives its error back, to throw. */
  reject(cause: keyof Counters['rejected'], error: SessionError): SessionError;
}

/**
 * Evicts the least recently active idle sessions while a new process, and a new session below `cap`,
 * would pass a limit; throws the limit no eviction can lift (closing nothing then).
 */
export function makeRoom<Vars extends SessionVars>(host: RoomHost<Vars>, cap: number): void {
  if (limitReached(host, cap) === undefined) return;
  const victims = host.store.victimsMakingRoom(cap, host.processes.live, host.options.maxConcurrentProcesses);
  if (typeof victims === 'string') throw limitError(host, victims, cap);
  // A synchronous hook may close other sessions meanwhile (a "log out everywhere"): room is checked
  // again before each eviction.
  for (let i = 0; i < victims && limitReached(host, cap) !== undefined; i++) {
    const victim = host.store.oldestIdle();
    if (victim === undefined) break;
    host.evict(victim);
  }
  const still = limitReached(host, cap);
  if (still !== undefined) throw limitError(host, still, cap);
}

/** Which limit a new session would pass now, if any. */
function limitReached<Vars extends SessionVars>(host: RoomHost<Vars>, cap: number): 'sessionLimit' | 'processLimit' | undefined {
  if (host.store.size >= cap) return 'sessionLimit';
  return host.processes.hasRoom ? undefined : 'processLimit';
}

function limitError<Vars extends SessionVars>(host: RoomHost<Vars>, limit: 'sessionLimit' | 'processLimit', cap: number): SessionError {
  return limit === 'sessionLimit'
    ? host.reject('sessionLimit', new SessionError('ERR_SESSION_LIMIT', `${host.store.size} sessions, ${host.store.idleCount} idle, cap ${cap}`))
    : host.reject('processLimit', new SessionError('ERR_SESSION_PROCESS_LIMIT', `${host.processes.live} processes`));
}
