import type { OutgoingHttpHeader, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { RequestLease } from '../lease.js';
import type { SessionVars } from '../process.js';
import { headersFor, setCookieFor, type CookieEngine, type HttpErrorAnswer } from './binding.js';

// Every Node framework (Express, Fastify, @hono/node-server) writes through a node:http ServerResponse,
// so the rules about the response live here once, on that object: the cookie is decided when the head
// is written, error answers are written one way. Per-request state sits on the response under one
// symbol, read by shared functions: no closure per request.

type HeaderArgument = OutgoingHttpHeaders | OutgoingHttpHeader[] | undefined;
export type WriteHead = (this: ServerResponse, statusCode: number, reasonOrHeaders?: string | HeaderArgument, headers?: HeaderArgument) => ServerResponse;

/** The part of a lease the response rules use (none of it depends on the vars' type). */
export type LeaseHandle = Pick<RequestLease<SessionVars>, 'run' | 'fail' | 'release' | 'released' | 'cookie' | 'nowMs' | 'releaseAtTheLatest' | 'holdAndReportAtTheLatest'>;

/** What writing the session cookie needs, kept on the response. */
export interface CookieState {
  readonly engine: CookieEngine;
  readonly lease: LeaseHandle;
  readonly secure: boolean;
  /** The writeHead an instance-level wrapper replaced; undefined when the wrapper sits on a prototype. */
  readonly writeHead: WriteHead | undefined;
}

const kState = Symbol('legacy-web-sessions.response');
type StatefulResponse = ServerResponse & { [kState]?: CookieState };

/** The state `setResponseState` put on this response. */
export function responseState<S extends CookieState>(res: ServerResponse): S | undefined {
  return (res as StatefulResponse)[kState] as S | undefined;
}

export function setResponseState(res: ServerResponse, state: CookieState): void {
  (res as StatefulResponse)[kState] = state;
}

/**
 * Writes the head through `writeHead` with `cookie` added to Set-Cookie. Headers passed to writeHead
 * itself keep Node's meaning (a name given replaces what setHeader put there, a name repeated in a list
 * adds up) and the session cookie is added to whatever Set-Cookie they leave; the caller's headers
 * object is never mutated.
 */
export function writeHeadWithCookie(
  res: ServerResponse, original: ServerResponse['writeHead'], cookie: string | string[] | undefined,
  statusCode: number, reasonOrHeaders?: string | HeaderArgument, maybeHeaders?: HeaderArgument,
): ServerResponse {
  const writeHead = original as unknown as WriteHead;
  const reason = typeof reasonOrHeaders === 'string' ? reasonOrHeaders : undefined;
  // No cookie to add: node:http reads the arguments as given (a reason that is not a string leaves the
  // headers to the third argument).
  if (cookie === undefined) return writeHead.call(res, statusCode, reasonOrHeaders, maybeHeaders);
  // As node:http: a reason that is not a string leaves the headers to the third argument if given.
  let headers = reason === undefined ? (maybeHeaders ?? reasonOrHeaders as HeaderArgument) : maybeHeaders;
  // A list of [name, value] entries, which node:http takes while no header was set (its fast path):
  // the same pairs, flat, so the cookie is added to them; with headers set, node:http refuses it.
  if (Array.isArray(headers) && Array.isArray(headers[0]) && res.getHeaderNames().length === 0) {
    headers = (headers as unknown as OutgoingHttpHeader[][]).flatMap((entry) => [entry[0], entry[1]] as OutgoingHttpHeader[]);
  }
  // Headers node:http refuses (a list of odd length, a value left undefined) go to it as given: it
  // throws as it would without sessions, rather than the cookie's handling dropping them quietly.
  if (Array.isArray(headers) && refusedByNode(headers)) return writeHeadAs(writeHead, res, statusCode, reason, headers);
  if (headers !== undefined && !Array.isArray(headers)) {
    // An object of headers (what frameworks pass): a copy with the cookie in it keeps Node's fast path.
    const withCookie: OutgoingHttpHeaders = {};
    let key: string | undefined;
    for (const name in headers) {
      withCookie[name] = headers[name];
      if (key === undefined && name.length === 10 && name.toLowerCase() === 'set-cookie') key = name;
    }
    if (key !== undefined && headers[key] === undefined) return writeHeadAs(writeHead, res, statusCode, reason, headers);
    const given = key === undefined ? res.getHeader('set-cookie') : headers[key];
    withCookie[key ?? 'set-cookie'] = given === undefined ? cookie : [...(Array.isArray(given) ? given : [String(given)]), ...asList(cookie)];
    return writeHeadAs(writeHead, res, statusCode, reason, withCookie);
  }
  if (headers !== undefined) {
    applyHeaderList(res, headers);
  } else if (!res.hasHeader('set-cookie')) {
    // The common case (res.end() with no header list): nothing to add to, so writeHead itself takes the
    // cookie, which spares setHeader's work and, when the application set no header, Node's header map.
    const withCookie: OutgoingHttpHeaders = { 'set-cookie': cookie };
    return writeHeadAs(writeHead, res, statusCode, reason, withCookie);
  }
  appendSetCookie(res, cookie);
  return reason === undefined ? writeHead.call(res, statusCode) : writeHead.call(res, statusCode, reason);
}

/**
 * Makes every way of sending `res`'s head (writeHead, write, end, flushHeaders: all go through
 * writeHead) carry the session cookie decided at that moment, so a session closed while the response
 * was being built answers with the clearing cookie. `state.writeHead` must be the writeHead replaced.
 */
export function cookieAtWriteHead(res: ServerResponse, state: CookieState): void {
  setResponseState(res, state);
  res.writeHead = writeHeadOnInstance as unknown as ServerResponse['writeHead'];
}

function writeHeadOnInstance(this: StatefulResponse, statusCode: number, reasonOrHeaders?: string | HeaderArgument, maybeHeaders?: HeaderArgument): ServerResponse {
  const state = this[kState]!;
  const cookie = this.headersSent ? undefined : setCookieFor(state.engine, state.lease, state.secure);
  return writeHeadWithCookie(this, state.writeHead as unknown as ServerResponse['writeHead'], cookie, statusCode, reasonOrHeaders, maybeHeaders);
}

const withCookieWriteHead = new WeakSet<object>();

/**
 * The same as `cookieAtWriteHead`, once for every response of a prototype the framework owns (Express's
 * `app.response`, its documented extension point): a request then only needs `setResponseState`.
 * Responses without state write their head unchanged.
 */
export function cookieAtWriteHeadOf(proto: ServerResponse): void {
  if (withCookieWriteHead.has(proto)) return;
  withCookieWriteHead.add(proto);
  // As appEndSeenOn (app-end.ts): a writeHead the prototype has of its own is the one wrapped; an
  // inherited one is looked up at each call, so one patched later on a prototype above (an APM agent's
  // on http.ServerResponse.prototype) is still the one called, as it would be without sessions.
  const own = Object.hasOwn(proto, 'writeHead') ? proto.writeHead : undefined;
  const writeHead = function (this: StatefulResponse, statusCode: number, reasonOrHeaders?: string | HeaderArgument, maybeHeaders?: HeaderArgument): ServerResponse {
    const inherited = own ?? (Object.getPrototypeOf(proto) as ServerResponse).writeHead;
    const state = this[kState];
    // A response whose own writeHead adds the cookie (state.writeHead set: a mounted Express sub-app's
    // request) calls this one on its way: the cookie is in already.
    const cookie = state === undefined || state.writeHead !== undefined || this.headersSent ? undefined : setCookieFor(state.engine, state.lease, state.secure);
    return writeHeadWithCookie(this, inherited, cookie, statusCode, reasonOrHeaders, maybeHeaders);
  };
  Object.defineProperty(proto, 'writeHead', { value: writeHead, writable: true, configurable: true });
}

/**
 * Headers that describe the answer a failed handler did not finish (its body, its representation, its
 * cookies, where it sent the client): an error answer drops them. The others are the response's, set by
 * middlewares around the handler as much as by it (CORS's Access-Control-*, Vary, helmet's security
 * headers): they stay, as in each framework's own error answer, or a browser could not read the 500
 * (no Access-Control-Allow-Origin) and the error page would go out without its security headers.
 */
export function describesTheAnswer(name: string): boolean {
  return ANSWER_HEADERS.has(name.toLowerCase());
}

// Named one by one: Content-Security-Policy is a security header of the response, not of the answer.
const ANSWER_HEADERS = new Set([
  'content-type', 'content-length', 'content-encoding', 'content-language', 'content-range', 'content-disposition',
  'content-location', 'content-md5', 'content-digest', 'repr-digest', 'digest', 'set-cookie', 'etag', 'last-modified',
  'location', 'refresh', 'transfer-encoding', 'trailer', 'accept-ranges', 'expires', 'age', 'link', 'retry-after', 'www-authenticate',
  // Directives to a reverse proxy or a CDN about the answer: serve this file instead (nginx, Apache,
  // lighttpd), cache it this long over Cache-Control (RFC 9213, Surrogate-Control, nginx).
  'proxy-authenticate', 'x-accel-redirect', 'x-sendfile', 'x-lighttpd-send-file', 'x-accel-expires', 'x-accel-buffering',
  'cdn-cache-control', 'surrogate-control', 'surrogate-key', 'cache-tag',
]);

/**
 * Writes an error answer. Headers the failed handler had set for its answer (a Content-Length, a
 * Content-Disposition, a cookie: `describesTheAnswer`) belong to the answer it did not finish, so they
 * go; the session cookie is added at writeHead as on every response. After the head was sent, cutting
 * the connection is the only honest signal left.
 */
export function sendErrorAnswer(res: ServerResponse, answer: HttpErrorAnswer): void {
  // Ended by the application before it failed: the response is complete, and cutting the connection now
  // would only truncate what is still on its way (and the responses pipelined behind it).
  if (res.writableEnded) return;
  if (res.headersSent) {
    res.destroy();
    return;
  }
  for (const name of res.getHeaderNames()) if (describesTheAnswer(name)) res.removeHeader(name);
  try {
    res.writeHead(answer.status, headersFor(answer, res.req?.httpVersionMajor ?? 1)).end(answer.body);
  } catch {
    // Writing the head failed (it carries the session cookie): the connection is the only signal left,
    // and a closed response still lets the process go.
    res.destroy();
  }
}

/** Calls node:http's writeHead with a reason phrase only when one was given. */
function writeHeadAs(writeHead: WriteHead, res: ServerResponse, statusCode: number, reason: string | undefined, headers: OutgoingHttpHeaders | OutgoingHttpHeader[]): ServerResponse {
  return reason === undefined ? writeHead.call(res, statusCode, headers) : writeHead.call(res, statusCode, reason, headers);
}

/** A flat header list node:http's writeHead throws for (checked before the cookie's handling would skip a value). */
function refusedByNode(headers: OutgoingHttpHeader[]): boolean {
  if (headers.length % 2 !== 0) return true;
  for (let i = 1; i < headers.length; i += 2) if (headers[i] === undefined) return true;
  return false;
}

/**
 * Applies headers given to writeHead as a flat [name, value, …] list with Node's own meaning: each name
 * given replaces what setHeader put there before, a name repeated in the list adds up. Only the session
 * cookie is added afterwards, by the caller.
 */
function applyHeaderList(res: ServerResponse, headers: OutgoingHttpHeader[]): void {
  const seen = new Set<string>();
  for (let i = 0; i + 1 < headers.length; i += 2) {
    const name = String(headers[i]);
    const value = headers[i + 1]!;
    const key = name.toLowerCase();
    if (seen.has(key)) res.appendHeader(name, typeof value === 'number' ? String(value) : value);
    else res.setHeader(name, value);
    seen.add(key);
  }
}

function appendSetCookie(res: ServerResponse, cookie: string | string[]): void {
  const existing = res.getHeader('set-cookie');
  res.setHeader('set-cookie', existing === undefined ? cookie : [...(Array.isArray(existing) ? existing : [String(existing)]), ...asList(cookie)]);
}

function asList(cookie: string | string[]): string[] {
  return typeof cookie === 'string' ? [cookie] : cookie;
}
