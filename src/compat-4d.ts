import type { SessionEngine } from './engine.js';
import { SessionArgumentError, SessionOptionError } from './errors.js';
import { DEFAULT_OPTIONS, describe, MAX_CONCURRENT_PROCESSES, MAX_DURATION_MS, type SessionMode } from './options.js';
import type { SessionVars } from './process.js';

/** 4D selector constants of the Web Server theme (values as in 4D). */
export const Web_max_concurrent_processes = 18;
export const Web_legacy_session = 70;
export const Web_max_sessions = 71;
/** Minutes. */
export const Web_inactive_session_timeout = 72;
export const Web_session_cookie_name = 73;
/** Minutes. */
export const Web_inactive_process_timeout = 78;
export const Web_session_cookie_domain = 81;
export const Web_session_cookie_path = 82;
export const Web_session_enable_IP_address_validation = 83;
export const Web_scalable_session = 90;

const MINUTE_MS = 60_000;

/** How one selector maps onto an engine option. */
interface SelectorRule<Vars extends SessionVars> {
  get(engine: SessionEngine<Vars>): number | string;
  set(engine: SessionEngine<Vars>, value: unknown): void;
}

function longint(selector: number, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', `selector ${selector} takes a Longint >= 0, got ${describe(value)}`);
  }
  return value;
}

/** 4D's documented range of a Longint selector; 0 (restore the default) passes. */
function inRange(selector: number, n: number, min: number, max: number): number {
  if (n !== 0 && (n < min || n > max)) throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', `selector ${selector} takes ${min} to ${max} (0 restores the default), got ${n}`);
  return n;
}

/**
 * A timeout in minutes, a Longint as in 4D, rounded up: one set by name under a minute reads as 1, never
 * as 0, which WEB SET OPTION takes for "the default" (480 minutes) if the value read is written back.
 */
function wholeMinutes(ms: number): number {
  return Math.ceil(ms / MINUTE_MS);
}

/** A timeout selector's value in milliseconds: the error speaks of minutes, which is what the caller gave. */
function minutesMs(selector: number, value: unknown): number {
  return inRange(selector, longint(selector, value), 1, MAX_DURATION_MS / MINUTE_MS) * MINUTE_MS;
}

function text(selector: number, value: unknown): string {
  if (typeof value !== 'string') throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', `selector ${selector} takes a Text, got ${describe(value)}`);
  return value;
}

function flag(selector: number, value: unknown): boolean {
  const n = longint(selector, value);
  if (n > 1) throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', `selector ${selector} takes 0 or 1, got ${n}`);
  return n === 1;
}

/** Setting one mode selector clears the other (last write wins); turning the current mode off means no sessions. */
function modeSelector<Vars extends SessionVars>(selector: number, mode: SessionMode): SelectorRule<Vars> {
  return {
    get: (engine) => (engine.getOption('mode') === mode ? 1 : 0),
    set: (engine, value) => {
      if (flag(selector, value)) engine.setOption('mode', mode);
      else if (engine.getOption('mode') === mode) engine.setOption('mode', 'none');
    },
  };
}

function selectorTable<Vars extends SessionVars>(): ReadonlyMap<number, SelectorRule<Vars>> {
  return new Map<number, SelectorRule<Vars>>([
    [Web_max_concurrent_processes, {
      get: (e) => e.getOption('maxConcurrentProcesses'),
      // What the option takes by name (1 to 10 000 000), not only 4D's 10 to 32 000: the engine may hold
      // a value outside 4D's range (set by name), and a value WEB GET OPTION read must be one WEB SET
      // OPTION takes back (4D code saving a setting and restoring it).
      set: (e, v) => e.setOption('maxConcurrentProcesses', inRange(18, longint(18, v), 1, MAX_CONCURRENT_PROCESSES) || DEFAULT_OPTIONS.maxConcurrentProcesses),
    }],
    [Web_legacy_session, modeSelector(Web_legacy_session, 'legacy')],
    [Web_scalable_session, modeSelector(Web_scalable_session, 'scalable')],
    [Web_max_sessions, {
      // Reads back clamped to Web max concurrent processes, as 4D says it "cannot exceed" it.
      get: (e) => e.getOption('maxSessions'),
      set: (e, v) => e.setOption('maxSessions', longint(71, v) || DEFAULT_OPTIONS.maxSessions),
    }],
    [Web_inactive_session_timeout, {
      get: (e) => wholeMinutes(e.getOption('inactiveSessionTimeoutMs')),
      set: (e, v) => e.setOption('inactiveSessionTimeoutMs', minutesMs(72, v) || DEFAULT_OPTIONS.inactiveSessionTimeoutMs),
    }],
    [Web_inactive_process_timeout, {
      get: (e) => wholeMinutes(e.getOption('inactiveProcessTimeoutMs')),
      set: (e, v) => e.setOption('inactiveProcessTimeoutMs', minutesMs(78, v) || DEFAULT_OPTIONS.inactiveProcessTimeoutMs),
    }],
    [Web_session_cookie_name, {
      get: (e) => e.getOption('cookieName'),
      set: (e, v) => e.setOption('cookieName', text(73, v) || DEFAULT_OPTIONS.cookieName),
    }],
    [Web_session_cookie_domain, {
      get: (e) => e.getOption('cookieDomain') ?? '',
      // 4D's own example writes "/*.4d.fr" for "the cookie goes to every host of .4d.fr".
      set: (e, v) => e.setOption('cookieDomain', text(81, v).replace(/^\/?\*/, '') || undefined),
    }],
    [Web_session_cookie_path, {
      get: (e) => e.getOption('cookiePath'),
      set: (e, v) => e.setOption('cookiePath', text(82, v) || DEFAULT_OPTIONS.cookiePath),
    }],
    [Web_session_enable_IP_address_validation, {
      get: (e) => (e.getOption('ipValidation') ? 1 : 0),
      set: (e, v) => e.setOption('ipValidation', flag(83, v)),
    }],
  ]);
}

/** The 4D command set, bound to one engine. */
export interface FourDCommands {
  /** WEB LEGACY CLOSE SESSION(sessionID): resolves `true` when a session was closed. */
  WEB_LEGACY_CLOSE_SESSION(sessionId: string): Promise<boolean>;
  /**
   * WEB SET OPTION(selector; value): minutes for timeouts; 0 restores the default of 18, 71, 72 and 78, "" that
   * of 73, 81 (no Domain) and 82; 70, 83 and 90 are flags: 0 turns the mode or the check off.
   */
  WEB_SET_OPTION(selector: number, value: number | string): void;
  /** WEB GET OPTION(selector) → value, in 4D units (minutes, 0/1). */
  WEB_GET_OPTION(selector: number): number | string;
  /** WEB Get Current Session ID → Text ('' outside a session). */
  WEB_Get_Current_Session_ID(): string;
  /** WEB LEGACY GET SESSION EXPIRATION(sessionID) → the cookie's expiry, or null (unknown id, not legacy mode). */
  WEB_LEGACY_GET_SESSION_EXPIRATION(sessionId: string): Date | null;
  /** WEB Get session process count(sessionID) → Longint. */
  WEB_Get_session_process_count(sessionId: string): number;
}

/**
 * 4D names for code ported from 4D. Selectors not listed here throw a `TypeError`
 * (`ERR_SESSION_UNKNOWN_OPTION`), as do negative or ill-typed values (`ERR_SESSION_INVALID_OPTION`).
 *
 * @example
 * const { WEB_SET_OPTION, WEB_LEGACY_CLOSE_SESSION } = use4D(engine);
 * WEB_SET_OPTION(Web_inactive_process_timeout, 60); // minutes
 * await WEB_LEGACY_CLOSE_SESSION(sessionId);
 */
export function use4D<Vars extends SessionVars>(engine: SessionEngine<Vars>): FourDCommands {
  if (typeof engine?.setOption !== 'function') throw new SessionArgumentError('use4D(engine): engine must be a SessionEngine');
  const table = selectorTable<Vars>();
  const rule = (selector: number): SelectorRule<Vars> => {
    const found = typeof selector === 'number' ? table.get(selector) : undefined;
    if (found === undefined) throw new SessionOptionError('ERR_SESSION_UNKNOWN_OPTION', `selector ${describe(selector)} (known: ${[...table.keys()].join(', ')})`);
    return found;
  };
  return {
    WEB_LEGACY_CLOSE_SESSION: (sessionId) => engine.closeSession(sessionId),
    WEB_SET_OPTION: (selector, value) => rule(selector).set(engine, value),
    WEB_GET_OPTION: (selector) => rule(selector).get(engine),
    WEB_Get_Current_Session_ID: () => engine.currentSessionId(),
    WEB_LEGACY_GET_SESSION_EXPIRATION: (sessionId) => engine.sessionExpiration(sessionId),
    WEB_Get_session_process_count: (sessionId) => engine.sessionProcessCount(sessionId),
  };
}
