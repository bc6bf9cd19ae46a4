/**
 * Every error this package raises, with a stable `code`. The table is the contract: codes never change
 * meaning, new ones are only added. The README lists them with the same text.
 */
export const ERROR_CODES = Object.freeze({
  /** Option value of the wrong type or out of range (a `TypeError`). */
  ERR_SESSION_INVALID_OPTION: { httpStatus: 500, message: 'invalid option value' },
  /** Option name that does not exist (a `TypeError`). */
  ERR_SESSION_UNKNOWN_OPTION: { httpStatus: 500, message: 'unknown option' },
  /** A function of this package called with an argument of the wrong type or shape (a `TypeError`): a bug in the caller. */
  ERR_SESSION_INVALID_ARGUMENT: { httpStatus: 500, message: 'invalid argument' },
  /** A new session is needed, `maxSessions` is reached and every session is busy. */
  ERR_SESSION_LIMIT: { httpStatus: 503, message: 'session limit reached and every session is busy' },
  /** `maxConcurrentProcesses` is reached: no process can be started. */
  ERR_SESSION_PROCESS_LIMIT: { httpStatus: 503, message: 'process limit reached' },
  /** The session already has `maxQueuedRequests` requests waiting for its process. */
  ERR_SESSION_QUEUE_FULL: { httpStatus: 503, message: 'too many requests queued for this session' },
  /** The request waited `queueTimeoutMs` for its session's busy process. */
  ERR_SESSION_QUEUE_TIMEOUT: { httpStatus: 503, message: 'waited too long for this session' },
  /** `stop()` was called: no new work is accepted. */
  ERR_SESSION_STOPPED: { httpStatus: 503, message: 'session engine is stopping' },
  /** The request comes from another IP address than the one that created the session. */
  ERR_SESSION_IP_MISMATCH: { httpStatus: 400, message: 'session belongs to another IP address' },
  /** A process of a closed session was used (lock, spawn) after its teardown. */
  ERR_SESSION_CLOSED: { httpStatus: 500, message: 'the session of this process is closed' },
  /** `init` threw or rejected: the new session was discarded. */
  ERR_SESSION_INIT_FAILED: { httpStatus: 500, message: 'init failed' },
  /** `onClose` threw or rejected (reported on `'error'`; teardown went on). */
  ERR_SESSION_HOOK_FAILED: { httpStatus: 500, message: 'onClose failed' },
  /** `onClose` did not settle within `closeTimeoutMs` (reported on `'error'`; teardown went on). */
  ERR_SESSION_HOOK_TIMEOUT: { httpStatus: 500, message: 'onClose timed out' },
  /** A request or spawned task of a closing session did not end within `closeTimeoutMs`. */
  ERR_SESSION_DRAIN_TIMEOUT: { httpStatus: 500, message: 'in-flight work did not end in time' },
  /** A request handler threw or rejected (the client got a generic 500). */
  ERR_SESSION_HANDLER_FAILED: { httpStatus: 500, message: 'request handler failed' },
  /** A task started with `proc.spawn` threw or rejected. */
  ERR_SESSION_TASK_FAILED: { httpStatus: 500, message: 'spawned task failed' },
  /** A request body exceeded the allowed size. */
  ERR_SESSION_BODY_TOO_LARGE: { httpStatus: 413, message: 'request body too large' },
  /**
   * The client left (closed its connection, reset its HTTP/2 stream) before its request body was read
   * whole. A client's doing, not the application's: answered 400 (to nobody, as a rule) and not reported
   * as a handler failure, as body-parser answers 'request aborted'.
   */
  ERR_SESSION_BODY_ABORTED: { httpStatus: 400, message: 'request body aborted by the client' },
  /** The session store (Redis) did not answer or refused a command; `cause` holds the client's error. */
  ERR_SESSION_STORE_UNAVAILABLE: { httpStatus: 503, message: 'session store unavailable' },
  /**
   * A request's or task's end could not be saved: its process had been freed under it (on the Redis
   * store, this node was taken for dead: cut from Redis for longer than `nodeLeaseMs`), so what it
   * changed is lost and the state saved before it stands. Reported on `'error'` (`storeErrors`).
   */
  ERR_SESSION_WRITE_FENCED: { httpStatus: 500, message: 'the process was freed under this request: its changes are lost' },
  /**
   * On `'error'` when a Redis store's node starts (`storeErrors`): Redis's `maxmemory-policy` is not
   * `noeviction`, so once Redis reaches `maxmemory` it deletes keys of its choosing, sessions among them,
   * with no hook and nothing reported (every key of the store has a lifetime, so `volatile-*` too).
   */
  ERR_SESSION_STORE_EVICTS: { httpStatus: 500, message: 'the session store may delete sessions on its own' },
  /** A process's state could not be saved to the store (a value the structured clone algorithm refuses); the last saved state is kept. */
  ERR_SESSION_STATE_NOT_STORABLE: { httpStatus: 500, message: 'session state cannot be stored' },
  /**
   * A process's state in the store cannot be read (damaged, or written by a newer Node whose serialization
   * this one does not know): the request fails and the bytes are left as they are; at a close its hook
   * cannot run (reported on `'error'`), and the close goes on.
   */
  ERR_SESSION_STATE_UNREADABLE: { httpStatus: 500, message: 'session state cannot be read' },
  /**
   * A warning (process.emitWarning), once per cookie name: a `SameSite=None` cookie is about to go out
   * over plain HTTP without `Secure` (cookieSecure 'auto'), and browsers drop such a cookie, so every
   * request would get a new session.
   */
  ERR_SESSION_COOKIE_INSECURE: { httpStatus: 500, message: 'SameSite=None session cookie sent without Secure over plain HTTP: browsers drop it' },
  /**
   * A warning (process.emitWarning), once per cookie name: the session cookie's name has the `__Host-`
   * or `__Secure-` prefix and the cookie is about to go out without what the prefix demands (`Secure`;
   * for `__Host-` also `Path=/` and no `Domain`), so browsers drop it and every request would get a new
   * session.
   */
  ERR_SESSION_COOKIE_REFUSED: { httpStatus: 500, message: "session cookie breaks its name's prefix rules: browsers drop it" },
  /**
   * A warning (process.emitWarning), once per process: an engine on the memory store was made in a
   * node:cluster worker (PM2's cluster mode included). Each worker then has sessions of its own, and a
   * request the cluster hands to another worker gets a new session.
   */
  ERR_SESSION_STORE_PER_PROCESS: { httpStatus: 500, message: 'memory store in a node:cluster worker: each worker has its own sessions' },
} as const satisfies Record<string, { httpStatus: number; message: string }>);
// Frozen through, as DEFAULT_OPTIONS is: every SessionError reads its status and message here, so an
// application writing into the exported table would change what every client is answered.
for (const entry of Object.values(ERROR_CODES)) Object.freeze(entry);

export type SessionErrorCode = keyof typeof ERROR_CODES;

/** Seconds a client is told to wait (`Retry-After`) after a 503. */
export const RETRY_AFTER_SECONDS = 1;

/**
 * The one error class of this package. `code` is stable; `httpStatus` is what the HTTP binding answers;
 * `sessionId` names the session concerned when there is one.
 */
export class SessionError extends Error {
  readonly code: SessionErrorCode;
  readonly httpStatus: number;
  readonly sessionId: string | undefined;

  constructor(code: SessionErrorCode, detail?: string, options?: { cause?: unknown; sessionId?: string }) {
    const base = ERROR_CODES[code].message;
    super(detail === undefined ? base : `${base}: ${detail}`, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SessionError';
    this.code = code;
    this.httpStatus = ERROR_CODES[code].httpStatus;
    this.sessionId = options?.sessionId;
  }
}

type TypeErrorCode = 'ERR_SESSION_INVALID_OPTION' | 'ERR_SESSION_UNKNOWN_OPTION' | 'ERR_SESSION_INVALID_ARGUMENT';

/** What option and argument errors share: a `TypeError` (as DESIGN.md requires) with a stable code and a status. */
abstract class SessionTypeError<Code extends TypeErrorCode> extends TypeError {
  readonly code: Code;
  readonly httpStatus: number;
  constructor(code: Code, detail: string) {
    super(`${ERROR_CODES[code].message}: ${detail}`);
    this.code = code;
    this.httpStatus = ERROR_CODES[code].httpStatus;
  }
}

/** An option's value or name refused (setOption, the constructor, createRedisStore, WEB SET OPTION). */
export class SessionOptionError extends SessionTypeError<'ERR_SESSION_INVALID_OPTION' | 'ERR_SESSION_UNKNOWN_OPTION'> {
  override readonly name = 'SessionOptionError';
}

/** A function of this package called with an argument it cannot take (`closeSession(42)`, a handler that is no function). */
export class SessionArgumentError extends SessionTypeError<'ERR_SESSION_INVALID_ARGUMENT'> {
  override readonly name = 'SessionArgumentError';
  constructor(detail: string) {
    super('ERR_SESSION_INVALID_ARGUMENT', detail);
  }
}
