import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { SessionEngine } from '../engine.js';
import { ERROR_CODES, RETRY_AFTER_SECONDS, SessionError } from '../errors.js';
import type { RequestLease } from '../lease.js';
import type { MaybePromise } from '../maybe-async.js';
import type { SessionVars } from '../process.js';
import type { RequestIdentity } from '../store.js';
import { clientIp, clientIsSecure } from './client-ip.js';
import { readSessionId } from './cookie.js';
import { bindingSettings, type OptionsEngine } from './settings.js';
import { withStaleClearings } from './stale-cookies.js';

/** What the binding uses of an engine: any `SessionEngine<Vars>` has it. */
export type HttpEngine<Vars extends SessionVars> = Pick<SessionEngine<Vars>, 'acquireNow'> & OptionsEngine;
/** What writing the cookie uses of an engine and a lease (neither depends on the vars' type). */
export type CookieEngine = OptionsEngine;
export type CookieLease = Pick<RequestLease<SessionVars>, 'cookie' | 'nowMs'>;

/** The parts of a request the binding reads; every framework can supply them (`socketFacts`). */
export interface HttpRequestFacts {
  readonly cookieHeader: string | undefined;
  /** The socket's remote address. */
  readonly remoteAddress: string | undefined;
  /** The X-Forwarded-For header (Node joins repeated ones with commas), read only under `trustProxy`. */
  readonly forwardedFor?: string | undefined;
  /** The connection is TLS (`cookieSecure: 'auto'`; see `isSecure` for what a trusted proxy says). */
  readonly secure: boolean;
  /** The X-Forwarded-Proto header, read only under `trustProxy`. */
  readonly forwardedProto?: string | undefined;
  /** The request itself: one that waits for its session's process stops counting in the queue if its client leaves. */
  readonly incoming?: IncomingMessage;
}

/** A complete error answer, framework-free. The body never contains an error's own text. */
export interface HttpErrorAnswer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

const STATUS_TEXT: Readonly<Record<number, string>> = { 400: 'Bad Request', 413: 'Payload Too Large', 500: 'Internal Server Error', 503: 'Service Unavailable' };

export { normalizeIp } from './client-ip.js';

/**
 * The facts of a request from Node's IncomingMessage, which every adapter has (Express's req, Fastify's
 * request.raw, Hono's c.env.incoming): frameworks' own views (req.ip, request.ip) are not used, so
 * every adapter applies the same rules, the engine's `trustProxy` among them.
 */
export function socketFacts(req: IncomingMessage): HttpRequestFacts {
  // One read of the headers getter (each read of `req.headers` is a call and a megamorphic symbol load in node:http).
  const headers = req.headers;
  const forwarded = headers['x-forwarded-for'];
  const proto = headers['x-forwarded-proto'];
  return {
    cookieHeader: headers.cookie,
    remoteAddress: req.socket.remoteAddress,
    forwardedFor: Array.isArray(forwarded) ? forwarded.join(',') : forwarded,
    secure: (req.socket as TLSSocket).encrypted === true,
    forwardedProto: Array.isArray(proto) ? proto.join(',') : proto,
    incoming: req,
  };
}

/**
 * Whether the client reached the server over HTTPS (the session cookie's `Secure` with `cookieSecure:
 * 'auto'`): a TLS socket, or, under the engine's `trustProxy`, a TLS-terminating proxy saying so in
 * X-Forwarded-Proto (read as X-Forwarded-For is for the client's address).
 */
export function isSecure(engine: OptionsEngine, facts: HttpRequestFacts): boolean {
  // Without the header, trustProxy has nothing to say: the options are not looked up.
  if (facts.secure || facts.forwardedProto === undefined) return facts.secure;
  return clientIsSecure(facts.secure, facts.forwardedProto, bindingSettings(engine).trustProxy);
}

/**
 * Binds a request to a process of `engine`: reads the cookie and the client's IP, acquires the process.
 * As `engine.acquireNow`: the lease at once when a process is free, a promise when the request waits,
 * a thrown `SessionError` when it is refused at once.
 */
export function acquireFor<Vars extends SessionVars>(engine: HttpEngine<Vars>, facts: HttpRequestFacts): MaybePromise<RequestLease<Vars>> {
  return engine.acquireNow(new HttpIdentity(engine, facts));
}

/**
 * A request's session id and client address as the engine's options say to read them (the cookie's
 * name, `trustProxy`), which a store that waited for its start reads again (`reread`): a Redis node's
 * first requests were read with its constructor's options, not yet the cluster's.
 */
class HttpIdentity implements RequestIdentity {
  readonly sessionId: string | undefined;
  readonly ip: string;
  readonly #engine: OptionsEngine;
  readonly #facts: HttpRequestFacts;

  constructor(engine: OptionsEngine, facts: HttpRequestFacts) {
    const settings = bindingSettings(engine);
    this.sessionId = readSessionId(facts.cookieHeader, settings.cookieName);
    this.ip = clientIp(facts.remoteAddress, facts.forwardedFor, settings.trustProxy);
    this.#engine = engine;
    this.#facts = facts;
  }

  reread(): RequestIdentity {
    return new HttpIdentity(this.#engine, this.#facts);
  }

  watchClientLeaving(left: () => void): () => void {
    const incoming = this.#facts.incoming;
    return incoming === undefined ? NOT_WATCHING : watchClientLeaving(incoming, left);
  }
}

const NOT_WATCHING = (): void => {};

type Carrier = { readonly destroyed: boolean; once(event: 'close', listener: () => void): unknown };

/** Per connection (HTTP/1) or stream (HTTP/2): the requests waiting on it to be told it closed. One listener each, however many requests a client pipelines. */
const leavingOn = new WeakMap<Carrier, Set<() => void>>();

/**
 * Calls `left` when the client of a request that has no response begun yet leaves: its HTTP/2 stream,
 * or its HTTP/1 connection, closes. Returns what stops the watching.
 */
function watchClientLeaving(req: IncomingMessage, left: () => void): () => void {
  const carrier: Carrier = (req as { stream?: Carrier }).stream ?? req.socket;
  if (carrier.destroyed) {
    left();
    return NOT_WATCHING;
  }
  let waiting = leavingOn.get(carrier);
  if (waiting === undefined) {
    const callbacks = new Set<() => void>();
    leavingOn.set(carrier, callbacks);
    carrier.once('close', () => {
      leavingOn.delete(carrier);
      for (const callback of callbacks) callback();
    });
    waiting = callbacks;
  }
  const set = waiting;
  set.add(left);
  return () => { set.delete(left); };
}

/**
 * The Set-Cookie header value(s) for the lease's response, decided now (call it when headers are
 * written): the session cookie, and after a run-time change of its domain or path the clearing of the
 * cookie under the earlier ones (stale-cookies.ts).
 */
export function setCookieFor(engine: CookieEngine, lease: CookieLease, secure: boolean): string | string[] | undefined {
  const directive = lease.cookie();
  if (directive.action === 'none') return undefined;
  const settings = bindingSettings(engine);
  const cookie = settings.cookieFormat.format(directive, secure);
  if (settings.staleCookies.length === 0 || directive.action !== 'set' || cookie === undefined) return cookie;
  return withStaleClearings(cookie, settings.staleCookies, settings.cookieName, lease.nowMs(), secure);
}

/**
 * The answer to a failed acquire or to an error a handler let escape: a SessionError's status (with its
 * code's fixed message, never its detail), another error's 4xx status (`isClientError`, with the status text only), else a
 * generic 500.
 */
export function errorAnswer(error: unknown): HttpErrorAnswer {
  const sessionError = isSessionError(error);
  const status = sessionError ? (error as SessionError).httpStatus : clientErrorStatus(error) ?? 500;
  const text = STATUS_TEXT[status] ?? STATUS_CODES[status] ?? 'Error';
  const headers: Record<string, string> = { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' };
  if (status === 503) headers['retry-after'] = String(RETRY_AFTER_SECONDS);
  // Stopping: the client's next request on this connection would get the same answer, while a new
  // connection may reach another node (a balancer's, a node:cluster primary's choice).
  if (sessionError && (error as SessionError).code === 'ERR_SESSION_STOPPED') headers.connection = 'close';
  // A session error's code has a fixed, safe message; its detail may carry the application's words (a
  // task's name, a handler's own text) and anything else might carry secrets: only those go out.
  const body = sessionError && status !== 500 ? `${text}: ${ERROR_CODES[(error as SessionError).code].message}\n` : `${text}\n`;
  return { status, headers, body };
}

/**
 * The answer's headers for a response of that HTTP version: connection-specific headers (the
 * `Connection: close` of a refusal while stopping) are not HTTP/2's (RFC 9113 §8.2.2), and Node drops
 * them with a process warning.
 */
export function headersFor(answer: HttpErrorAnswer, httpVersionMajor: number): Readonly<Record<string, string>> {
  if (httpVersionMajor < 2 || answer.headers.connection === undefined) return answer.headers;
  const { connection: _connection, ...headers } = answer.headers;
  return headers;
}

/**
 * What `Connection: close` asks of an HTTP/1.1 client (the refusal of a stopping engine: its next request
 * opens a new connection, which may reach another node), done for an HTTP/2 request, which cannot carry
 * that header: its connection is closed gracefully (GOAWAY). Its streams under way, this one's answer
 * among them, finish; a stream the client opens after it is refused (REFUSED_STREAM), which clients
 * retry on a new connection. Without it an HTTP/2 client, which sends every request on one connection,
 * would get 503 on each until the server closes.
 */
export function closeConnectionFor(answer: HttpErrorAnswer, req: IncomingMessage): void {
  if (req.httpVersionMajor < 2 || answer.headers.connection !== 'close') return;
  const session = (req as { stream?: { session?: { closed?: boolean; destroyed?: boolean; close(): void } } }).stream?.session;
  if (session === undefined || session.closed === true || session.destroyed === true) return;
  try {
    session.close();
  } catch {
    // A session closing meanwhile: nothing more to say.
  }
}

/**
 * A handler error that names a 4xx status is an answer, not a failure: a SessionError such as
 * ERR_SESSION_BODY_TOO_LARGE (413), or an error with `status`/`statusCode` as http-errors, Fastify's
 * errors and Hono's HTTPException have. It is answered with that status and not reported; anything
 * else a handler throws is a failure (generic 500, `'error'` event).
 */
export function isClientError(error: unknown): boolean {
  return clientErrorStatus(error) !== undefined;
}

/** `instanceof SessionError`, false for a value whose prototype cannot be read (a revoked Proxy). */
function isSessionError(error: unknown): boolean {
  try {
    return error instanceof SessionError;
  } catch {
    return false;
  }
}

function clientErrorStatus(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  try {
    const { status, statusCode, httpStatus } = error as { status?: unknown; statusCode?: unknown; httpStatus?: unknown };
    const code = isSessionError(error) ? httpStatus : typeof statusCode === 'number' ? statusCode : status;
    return typeof code === 'number' && Number.isInteger(code) && code >= 400 && code < 500 ? code : undefined;
  } catch {
    // A thrown value whose getters throw (a revoked Proxy): no status can be read, so it is a failure.
    return undefined;
  }
}
