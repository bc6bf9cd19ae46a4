import { SessionArgumentError } from '../../errors.js';
import * as http from 'node:http';
import type { SessionEngine } from '../../engine.js';
import { acquireFor, errorAnswer, isClientError, isSecure, setCookieFor, socketFacts } from '../../http/binding.js';
import { runRequestEventsIn } from '../../http/context.js';
import { appEndSeenOn } from '../../http/app-end.js';
import { closeWithItsConnection, holdWhileHandlerRuns, isCut, isFailure, releaseAfterResponse, releaseWhenAppEnds } from '../../http/release.js';
import { sendErrorAnswer, writeHeadWithCookie } from '../../http/response.js';
import type { RequestLease } from '../../lease.js';
import { isThenable, type MaybePromise } from '../../maybe-async.js';
import type { SessionVars, WebProcess } from '../../process.js';

export { readBody, readForm, DEFAULT_MAX_BODY_BYTES, type BodySource, type ReadBodyOptions } from '../../http/body.js';

/** A request handler: runs in the session's process; its return (or resolution) ends its use of `proc`. */
export type SessionHandler<Vars extends SessionVars> = (req: http.IncomingMessage, res: http.ServerResponse, proc: WebProcess<Vars>) => unknown;

type HeaderArgument = http.OutgoingHttpHeaders | http.OutgoingHttpHeader[] | undefined;

/** `http.createServer`'s options, and one of ours. */
export interface SessionServerOptions extends http.ServerOptions {
  /**
   * Takes the requests that need no session (static files, health checks, metric scrapes) before any
   * session work: return `true` when it answered the request (or is answering it; a returned promise
   * counts as taken, and its rejection is answered like a handler's). Such a request reads no cookie,
   * creates, touches and extends no session, and gets no Set-Cookie; at the cap it cannot evict anyone.
   * Anything else (`false`, `undefined`) goes on to the session handler. A throw is a 500, reported on
   * the engine's `'error'` event as a handler failure. @default undefined (every request has a session)
   */
  sessionless?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean | PromiseLike<unknown>;
}

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
export function createServer<Vars extends SessionVars>(engine: SessionEngine<Vars>, handler: SessionHandler<Vars>, options: SessionServerOptions = {}): http.Server {
  if (typeof engine?.acquireNow !== 'function') throw new SessionArgumentError('createServer(engine, handler): engine must be a SessionEngine');
  if (typeof handler !== 'function') throw new SessionArgumentError('createServer(engine, handler): handler must be a function');
  const { sessionless, ServerResponse: AppResponse = http.ServerResponse, ...serverOptions } = options;
  if (sessionless !== undefined && typeof sessionless !== 'function') throw new SessionArgumentError('createServer(engine, handler, { sessionless }): sessionless must be a function (req, res) => boolean');
  if (typeof AppResponse !== 'function' || !(AppResponse === http.ServerResponse || AppResponse.prototype instanceof http.ServerResponse)) {
    throw new SessionArgumentError('createServer(engine, handler, { ServerResponse }): ServerResponse must be http.ServerResponse or a subclass of it');
  }

  // A ServerResponse subclass adds the cookie in writeHead, which every way of sending headers goes
  // through (end(), write(), flushHeaders()), without a closure per request. It extends the class the
  // options give (http.createServer's `ServerResponse`), so an application's own class stays the class
  // of every response.
  class SessionResponse extends AppResponse {
    lease: RequestLease<Vars> | undefined;
    secure = false;

    override writeHead(statusCode: number, reasonOrHeaders?: string | HeaderArgument, maybeHeaders?: HeaderArgument): this {
      const cookie = this.lease === undefined || this.headersSent ? undefined : setCookieFor(engine, this.lease, this.secure);
      // The application's writeHead (its own class's, or node:http's), looked up at each call as before:
      // one patched later (an APM agent's on http.ServerResponse.prototype) is still the one called.
      writeHeadWithCookie(this, super.writeHead, cookie, statusCode, reasonOrHeaders, maybeHeaders);
      return this;
    }
  }

  // After a client left, a callback's end() says it is done with the process, whatever reference to
  // res.end it holds (res.end.bind(res) taken before): seen on the class, not on each response.
  appEndSeenOn(SessionResponse.prototype);

  const server = http.createServer({ ...serverOptions, ServerResponse: SessionResponse as typeof http.ServerResponse }, sessionless === undefined
    ? (req, res) => serve(engine, handler, req, res as SessionResponse)
    : (req, res) => {
      if (!tookWithoutSession(engine, sessionless, req, res)) serve(engine, handler, req, res as SessionResponse);
    });
  return server;
}

type SessionServerResponse<Vars extends SessionVars> = http.ServerResponse & { lease: RequestLease<Vars> | undefined; secure: boolean };

// No async function and no promise on the way of a request whose process is free and whose handler is
// synchronous: on Node 20 each promise also runs the async hooks behind AsyncLocalStorage.
function serve<Vars extends SessionVars>(engine: SessionEngine<Vars>, handler: SessionHandler<Vars>, req: http.IncomingMessage, res: SessionServerResponse<Vars>): void {
  closeWithItsConnection(req, res);
  const facts = socketFacts(req);
  let acquired: MaybePromise<RequestLease<Vars>>;
  try {
    acquired = acquireFor(engine, facts);
  } catch (error) {
    sendErrorAnswer(res, errorAnswer(error));
    return;
  }
  // A free process (the common case): run at once, without the two closures a wait needs.
  if (!isThenable(acquired)) {
    run(handler, req, res, acquired, isSecure(engine, facts));
    return;
  }
  Promise.resolve(acquired).then((lease) => run(handler, req, res, lease, isSecure(engine, facts)), (error: unknown) => sendErrorAnswer(res, errorAnswer(error)));
}

function run<Vars extends SessionVars>(handler: SessionHandler<Vars>, req: http.IncomingMessage, res: SessionServerResponse<Vars>, lease: RequestLease<Vars>, secure: boolean): void {
  res.lease = lease;
  res.secure = secure;
  runRequestEventsIn(req, lease);
  const cutBefore = isCut(res);
  let returned: unknown;
  try {
    returned = lease.run(() => handler(req, res, lease.proc));
  } catch (error) {
    failed(res, lease, error);
    return;
  }
  if (!isThenable(returned)) {
    // Returned with its response ended (the common case): free now. Returned without ending it: its work
    // goes on in callbacks, and its end() says when it is done, even if the client leaves first.
    releaseWhenAppEnds(res, lease, isCut(res) && !cutBefore);
    return;
  }
  holdWhileHandlerRuns(res, lease);
  Promise.resolve(returned).then(() => releaseAfterResponse(res, lease), (error: unknown) => failed(res, lease, error));
}

function tookWithoutSession(engine: SessionEngine<SessionVars>, sessionless: NonNullable<SessionServerOptions['sessionless']>, req: http.IncomingMessage, res: http.ServerResponse): boolean {
  let returned: unknown;
  try {
    returned = sessionless(req, res);
  } catch (error) {
    failedWithoutSession(engine, res, error);
    return true;
  }
  if (!isThenable(returned)) return returned === true;
  Promise.resolve(returned).then(undefined, (error: unknown) => failedWithoutSession(engine, res, error));
  return true;
}

function failedWithoutSession(engine: SessionEngine<SessionVars>, res: http.ServerResponse, error: unknown): void {
  if (!isClientError(error)) engine.reportHandlerError(error, '');
  sendErrorAnswer(res, errorAnswer(error));
}

function failed<Vars extends SessionVars>(res: SessionServerResponse<Vars>, lease: RequestLease<Vars>, error: unknown): void {
  // An error naming a 4xx status (readBody's 413) is an answer; anything else is a failure, reported.
  if (isFailure(error, res)) lease.fail(error);
  sendErrorAnswer(res, errorAnswer(error));
  releaseAfterResponse(res, lease);
}
