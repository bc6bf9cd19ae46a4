import * as http from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { SessionEngine } from '../../engine.js';
import { acquireFor, errorAnswer, setCookieFor } from '../../http/binding.js';
import type { RequestLease } from '../../lease.js';
import type { SessionVars, WebProcess } from '../../process.js';

export { readBody, readForm, DEFAULT_MAX_BODY_BYTES, type BodySource, type ReadBodyOptions } from '../../http/body.js';

/** A request handler: runs in the session's process; its return (or resolution) ends its use of `proc`. */
export type SessionHandler<Vars extends SessionVars> = (req: http.IncomingMessage, res: http.ServerResponse, proc: WebProcess<Vars>) => unknown;

type HeaderArgument = http.OutgoingHttpHeaders | http.OutgoingHttpHeader[] | undefined;

/**
 * Creates an `http.Server` whose every request runs in a session process. The session cookie is written
 * when the headers go out, so a session closed during the request answers with a clearing cookie.
 * A handler that throws or rejects gets a generic 500 (its error goes to the engine's `'error'` event)
 * and the session stays usable. Call `listen()` yourself; call `engine.stop()` before `server.close()`.
 *
 * @example
 * const engine = new SessionEngine<{ visits: number }>({ init: () => ({ visits: 0 }) });
 * createServer(engine, (req, res, proc) => {
 *   proc.vars.visits++;
 *   res.end(`visit ${proc.vars.visits}`);
 * }).listen(8080);
 */
export function createServer<Vars extends SessionVars>(engine: SessionEngine<Vars>, handler: SessionHandler<Vars>, options: http.ServerOptions = {}): http.Server {
  if (typeof handler !== 'function') throw new TypeError('createServer(engine, handler): handler must be a function');

  // A ServerResponse subclass adds the cookie in writeHead, which every way of sending headers goes
  // through (end(), write(), flushHeaders()), without a closure per request.
  class SessionResponse extends http.ServerResponse {
    lease: RequestLease<Vars> | undefined;
    secure = false;

    override writeHead(statusCode: number, reasonOrHeaders?: string | HeaderArgument, maybeHeaders?: HeaderArgument): this {
      const cookie = this.lease === undefined || this.headersSent ? undefined : setCookieFor(engine, this.lease, this.secure);
      if (cookie === undefined) {
        return typeof reasonOrHeaders === 'string' ? super.writeHead(statusCode, reasonOrHeaders, maybeHeaders) : super.writeHead(statusCode, reasonOrHeaders);
      }
      // Headers given here would replace a Set-Cookie set earlier: apply them first, adding to Set-Cookie.
      const headers = typeof reasonOrHeaders === 'string' ? maybeHeaders : reasonOrHeaders;
      if (headers !== undefined) applyHeaders(this, headers);
      appendSetCookie(this, cookie);
      return typeof reasonOrHeaders === 'string' ? super.writeHead(statusCode, reasonOrHeaders) : super.writeHead(statusCode);
    }
  }

  const server = http.createServer({ ...options, ServerResponse: SessionResponse as typeof http.ServerResponse }, (req, res) => {
    void serve(engine, handler, req, res as SessionResponse);
  });
  return server;
}

async function serve<Vars extends SessionVars>(
  engine: SessionEngine<Vars>,
  handler: SessionHandler<Vars>,
  req: http.IncomingMessage,
  res: http.ServerResponse & { lease: RequestLease<Vars> | undefined; secure: boolean },
): Promise<void> {
  const secure = (req.socket as TLSSocket).encrypted === true;
  let lease: RequestLease<Vars>;
  try {
    lease = await acquireFor(engine, { cookieHeader: req.headers.cookie, remoteAddress: req.socket.remoteAddress, secure });
  } catch (error) {
    const answer = errorAnswer(error);
    res.writeHead(answer.status, answer.headers).end(answer.body);
    return;
  }
  res.lease = lease;
  res.secure = secure;
  try {
    await lease.run(() => handler(req, res, lease.proc));
  } catch (error) {
    lease.fail(error);
    if (!res.headersSent) {
      const answer = errorAnswer(undefined);
      res.writeHead(answer.status, answer.headers).end(answer.body);
    } else {
      res.destroy(); // headers are out: the only honest signal left is a cut connection
    }
  }
  // The process is free once the handler is done and the response has ended (or the client left).
  if (res.writableEnded || res.destroyed) lease.release();
  else res.once('close', () => lease.release());
}

/**
 * Applies headers given to writeHead as an object or a flat [name, value, …] list with Node's own
 * meaning: each name given replaces what setHeader put there before, a name repeated in the list adds
 * up. Only our session cookie is added afterwards, by the caller.
 */
function applyHeaders(res: http.ServerResponse, headers: http.OutgoingHttpHeaders | http.OutgoingHttpHeader[]): void {
  const seen = new Set<string>();
  const apply = (name: string, value: http.OutgoingHttpHeader | undefined): void => {
    if (value === undefined) return;
    const key = name.toLowerCase();
    if (seen.has(key)) res.appendHeader(name, typeof value === 'number' ? String(value) : value);
    else res.setHeader(name, value);
    seen.add(key);
  };
  if (Array.isArray(headers)) {
    for (let i = 0; i + 1 < headers.length; i += 2) apply(String(headers[i]), headers[i + 1]);
  } else {
    for (const name of Object.keys(headers)) apply(name, headers[name]);
  }
}

function appendSetCookie(res: http.ServerResponse, cookie: string): void {
  const existing = res.getHeader('set-cookie');
  res.setHeader('set-cookie', existing === undefined ? cookie : Array.isArray(existing) ? [...existing, cookie] : [String(existing), cookie]);
}
