export { SessionEngine, type RequestIdentity } from './engine.js';
export { RequestLease, type CookieDirective } from './lease.js';
export { WebProcess, Selections, type Selection, type ProcessLocks, type SessionVars } from './process.js';
export { MemoryLockManager, type LockManager, type LockOwner, type LockRef } from './locks.js';
export { ManualClock, systemClock, type Clock, type TimerHandle } from './clock.js';
export { SessionError, SessionOptionError, ERROR_CODES, RETRY_AFTER_SECONDS, type SessionErrorCode } from './errors.js';
export { DEFAULT_OPTIONS, OPTION_NAMES, type RuntimeOptions, type OptionName, type SessionMode, type CookieSameSite, type CookieSecure } from './options.js';
export type { CloseReason } from './session.js';
export type { SessionEngineOptions, SessionInfo, EngineStats, SessionEngineEvents, CreateEvent, CloseEvent, OptionEvent } from './types.js';
