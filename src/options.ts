import { SessionOptionError } from './errors.js';

/** How sessions behave: 4D's three web process modes. */
export type SessionMode = 'legacy' | 'scalable' | 'none';
export type CookieSameSite = 'Strict' | 'Lax' | 'None';
/** `'auto'`: `Secure` exactly when the request came over HTTPS. */
export type CookieSecure = 'auto' | boolean;

/** The options that can be read and changed at run time (`getOption` / `setOption`). */
export interface RuntimeOptions {
  /** @default 'legacy' */
  mode: SessionMode;
  /** Live sessions at most; the least recently active idle one is closed to make room. Clamped to `maxConcurrentProcesses`. @default 100 */
  maxSessions: number;
  /** Processes of any kind at most (session processes, spawned tasks, `'none'`-mode requests). @default 100 */
  maxConcurrentProcesses: number;
  /** Idle time after which a session is closed with `'timeout'`. @default 28_800_000 (480 min) */
  inactiveProcessTimeoutMs: number;
  /** Lifetime of the cookie, counted from each request. @default 28_800_000 (480 min) */
  inactiveSessionTimeoutMs: number;
  /** @default '4DSID' */
  cookieName: string;
  /** @default undefined (host-only cookie) */
  cookieDomain: string | undefined;
  /** @default '/' */
  cookiePath: string;
  /** @default 'Strict' */
  cookieSameSite: CookieSameSite;
  /** @default 'auto' */
  cookieSecure: CookieSecure;
  /** Reject (400) a request whose IP differs from the session creator's. @default true */
  ipValidation: boolean;
  /**
   * Where the client's IP comes from. `false`: the socket's remote address. `true`: the leftmost
   * X-Forwarded-For entry (only behind a proxy that overwrites the header). A number n: the address n hops
   * back from the socket in [...X-Forwarded-For, socket] (n = 1 for one proxy you run). @default false
   */
  trustProxy: boolean | number;
  /** Requests of one session that may run in parallel, each in its own process. @default 1 */
  processesPerSession: number;
  /** Requests waiting for a busy session, per session; one more gets 503. @default 16 */
  maxQueuedRequests: number;
  /**
   * How long a request may wait for its session's busy process (behind the requests before it); then it
   * gets 503 (`ERR_SESSION_QUEUE_TIMEOUT`) and the session is untouched. @default 30_000
   */
  queueTimeoutMs: number;
  /** Bound on each wait of the close pipeline (in-flight work, each `onClose`). @default 30_000 */
  closeTimeoutMs: number;
}

export type OptionName = keyof RuntimeOptions;

/** Key of the engine's options version (not exported from the package): it changes with every option change. */
export const kOptionsVersion: unique symbol = Symbol('legacy-web-sessions.optionsVersion');

const MINUTE_MS = 60_000;

export const DEFAULT_OPTIONS: Readonly<RuntimeOptions> = Object.freeze({
  mode: 'legacy',
  maxSessions: 100,
  maxConcurrentProcesses: 100,
  inactiveProcessTimeoutMs: 480 * MINUTE_MS,
  inactiveSessionTimeoutMs: 480 * MINUTE_MS,
  cookieName: '4DSID',
  cookieDomain: undefined,
  cookiePath: '/',
  cookieSameSite: 'Strict',
  cookieSecure: 'auto',
  ipValidation: true,
  trustProxy: false,
  processesPerSession: 1,
  maxQueuedRequests: 16,
  queueTimeoutMs: 30_000,
  closeTimeoutMs: 30_000,
});

export const OPTION_NAMES = Object.freeze(Object.keys(DEFAULT_OPTIONS) as OptionName[]);

// Bounds keep every value usable by timers and counters; a day in ms is far below the top.
/** The most processes `maxConcurrentProcesses` takes (also by WEB SET OPTION on selector 18). */
export const MAX_CONCURRENT_PROCESSES = 10_000_000;
/** The longest timeout an option takes (366 days): longer ones are refused, not clamped. */
export const MAX_DURATION_MS = 366 * 24 * 60 * MINUTE_MS;
// RFC 6265 token: what a cookie name may contain (no separators, so no header injection).
const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// DNS labels of at most 63 characters, as the `cookie` package requires when it serializes the domain.
const COOKIE_DOMAIN = /^\.?[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
// A path starting with '/', in the characters the `cookie` package serializes (printable ASCII without
// ';' and '<'): anything it would refuse at response time is refused here, when the option is set.
const COOKIE_PATH = /^\/[\x20-\x3A\x3D-\x7E]*$/;

function integer(name: OptionName, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', `${name} must be an integer from ${min} to ${max}, got ${describe(value)}`);
  }
  return value;
}

function oneOf<T extends string | boolean>(name: OptionName, value: unknown, allowed: readonly T[]): T {
  if (!allowed.includes(value as T)) {
    throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', `${name} must be one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}, got ${describe(value)}`);
  }
  return value as T;
}

function pattern(name: OptionName, value: unknown, shape: RegExp, what: string): string {
  if (typeof value !== 'string' || value.length > 1024 || !shape.test(value)) {
    throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', `${name} must be ${what}, got ${describe(value)}`);
  }
  return value;
}

export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === undefined || value === null) return String(value);
  return typeof value;
}

const VALIDATORS: { [K in OptionName]: (value: unknown) => RuntimeOptions[K] } = {
  mode: (v) => oneOf('mode', v, ['legacy', 'scalable', 'none'] as const),
  maxSessions: (v) => integer('maxSessions', v, 1, 10_000_000),
  maxConcurrentProcesses: (v) => integer('maxConcurrentProcesses', v, 1, MAX_CONCURRENT_PROCESSES),
  inactiveProcessTimeoutMs: (v) => integer('inactiveProcessTimeoutMs', v, 1, MAX_DURATION_MS),
  inactiveSessionTimeoutMs: (v) => integer('inactiveSessionTimeoutMs', v, 1, MAX_DURATION_MS),
  cookieName: (v) => pattern('cookieName', v, COOKIE_NAME, 'a cookie-name token (letters, digits, !#$%&\'*+-.^_`|~)'),
  cookieDomain: (v) => (v === undefined ? undefined : pattern('cookieDomain', v, COOKIE_DOMAIN, 'a domain name such as "example.com" or ".example.com"')),
  cookiePath: (v) => pattern('cookiePath', v, COOKIE_PATH, 'a path starting with "/" without ";", "<" or control characters'),
  cookieSameSite: (v) => oneOf('cookieSameSite', v, ['Strict', 'Lax', 'None'] as const),
  cookieSecure: (v) => oneOf<'auto' | boolean>('cookieSecure', v, ['auto', true, false]),
  ipValidation: (v) => oneOf('ipValidation', v, [true, false]),
  trustProxy: (v) => (typeof v === 'number' ? integer('trustProxy', v, 1, 100) : oneOf('trustProxy', v, [true, false])),
  processesPerSession: (v) => integer('processesPerSession', v, 1, 10_000),
  maxQueuedRequests: (v) => integer('maxQueuedRequests', v, 0, 100_000),
  queueTimeoutMs: (v) => integer('queueTimeoutMs', v, 1, MAX_DURATION_MS),
  closeTimeoutMs: (v) => integer('closeTimeoutMs', v, 1, MAX_DURATION_MS),
};

export function isOptionName(name: unknown): name is OptionName {
  return typeof name === 'string' && Object.hasOwn(VALIDATORS, name);
}

/** Validates one option by name; throws `SessionOptionError` (a `TypeError`) with a message naming the option. */
export function validateOption<K extends OptionName>(name: K, value: unknown): RuntimeOptions[K] {
  if (!isOptionName(name)) throw new SessionOptionError('ERR_SESSION_UNKNOWN_OPTION', `${describe(name)} (known: ${OPTION_NAMES.join(', ')})`);
  return VALIDATORS[name](value) as RuntimeOptions[K];
}

/** Checks rules between options (after each change, so a bad combination is refused whole). */
/**
 * The value of another option that `name: value` cannot go with (validateCombination's rule), if any: a
 * shared store checks it where the value is written, so two nodes setting such a pair at once cannot
 * both succeed.
 */
export function conflictingOption(name: OptionName, value: unknown): { name: OptionName; value: unknown } | undefined {
  if (name === 'cookieSecure' && value === false) return { name: 'cookieSameSite', value: 'None' };
  if (name === 'cookieSameSite' && value === 'None') return { name: 'cookieSecure', value: false };
  return undefined;
}

export function validateCombination(options: RuntimeOptions): void {
  if (options.cookieSameSite === 'None' && options.cookieSecure === false) {
    throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', 'cookieSameSite "None" needs a Secure cookie: browsers drop it otherwise (set cookieSecure to true or "auto")');
  }
}

/** Builds the full option set from user input, never mutating it; unknown keys are rejected. */
export function resolveOptions(input: Partial<Record<OptionName, unknown>>): RuntimeOptions {
  const options: RuntimeOptions = { ...DEFAULT_OPTIONS };
  for (const name of OPTION_NAMES) {
    if (Object.hasOwn(input, name) && input[name] !== undefined) {
      (options as unknown as Record<string, unknown>)[name] = validateOption(name, input[name]);
    }
  }
  validateCombination(options);
  return options;
}
