import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Context, MiddlewareHandler, Next } from 'hono';
import type { SessionEngine } from '../../engine.js';
import { SessionArgumentError, SessionError } from '../../errors.js';
import { acquireFor, closeConnectionFor, errorAnswer, headersFor, isClientError, isSecure, socketFacts } from '../../http/binding.js';
import type { RequestVars } from '../../http/request-vars.js';
import { closeWithItsConnection, holdWhileHandlerRuns, isFailure, releaseAfterResponse } from '../../http/release.js';
import { cookieAtWriteHead, type WriteHead } from '../../http/response.js';
import type { RequestLease } from '../../lease.js';
import { isThenable, type MaybePromise } from '../../maybe-async.js';
import type { SessionVars, WebProcess } from '../../process.js';

declare module 'hono' {
  interface ContextVariableMap {
    /** The session's process this request runs in, set by `sessions(engine)`. Type its `vars` once with `SessionTypes`. */
    proc: WebProcess<RequestVars>;
  }
}

/** The Hono environment the middleware provides, for apps that type their variables per app. */
export interface SessionsEnv<Vars extends SessionVars = RequestVars> {
  Variables: { proc: WebProcess<Vars> };
}

/**
 * Hono middleware for Node (`@hono/node-server`, whose `c.env` carries the Node request and response):
 * every request after it runs in its browser's session process, `c.get('proc')`, one request at a time
 * per process. The session cookie is written with the response head (so a session closed during the
 * request answers with the clearing cookie); the process is released once the handlers have settled
 * and the response is over. Refused requests get 400 (IP mismatch) or 503 (limits).
 *
 * Errors: Hono hands a thrown error to `app.onError`, whose default answers a generic 500 (and logs
 * with console.error); the middleware reports it on the engine's `'error'` event
 * (`ERR_SESSION_HANDLER_FAILED`) whatever answered it, except an error naming a 4xx status (an
 * `HTTPException` such as 401), which is an answer, not a failure. The session stays usable.
 *
 * @example
 * import { Hono } from 'hono';
 * import { serve } from '@hono/node-server';
 * import { SessionEngine } from 'legacy-web-sessions';
 * import { sessions } from 'legacy-web-sessions/hono';
 *
 * const engine = new SessionEngine({ init: () => ({ visits: 0 }) });
 * const app = new Hono();
 * app.use(sessions(engine));
 * app.get('/', (c) => c.text(`visit ${++(c.get('proc').vars as { visits: number }).visits}`));
 * serve({ fetch: app.fetch, port: 8080 });
 */
export function sessions<Vars extends SessionVars = RequestVars>(engine: SessionEngine<Vars>): MiddlewareHandler<SessionsEnv<Vars>> {
  if (typeof engine?.acquireNow !== 'function') throw new SessionArgumentError('sessions(engine): engine must be a SessionEngine');
  // Not an async function: a request whose process is free costs one promise here (the one that waits
  // for the handlers), not three (on Node 20 each also runs the async hooks behind AsyncLocalStorage).
  return function legacyWebSessions(c, next) {
    const { incoming, outgoing } = (c.env ?? {}) as { incoming?: IncomingMessage; outgoing?: ServerResponse };
    if (incoming === undefined || outgoing === undefined) {
      throw new SessionArgumentError('legacy-web-sessions/hono needs @hono/node-server: c.env.incoming and c.env.outgoing are missing');
    }
    // Registered again on the request's way (a sub-app mounted with app.route that has it too): the
    // request has its process already.
    if (c.get('proc') !== undefined) return next();
    closeWithItsConnection(incoming, outgoing);
    const facts = socketFacts(incoming);
    let acquired: MaybePromise<RequestLease<Vars>>;
    try {
      acquired = acquireFor(engine, facts);
    } catch (error) {
      return Promise.resolve(refusal(error, incoming));
    }
    if (!isThenable(acquired)) return enter(engine, c, next, outgoing, acquired, isSecure(engine, facts));
    return acquired.then((lease) => enter(engine, c, next, outgoing, lease, isSecure(engine, facts)), (error: unknown) => refusal(error, incoming));
  };
}

function refusal(error: unknown, incoming: IncomingMessage): Response {
  const answer = errorAnswer(error);
  closeConnectionFor(answer, incoming);
  return new Response(answer.body, { status: answer.status, headers: headersFor(answer, incoming.httpVersionMajor) });
}

function enter<Vars extends SessionVars>(
  engine: SessionEngine<Vars>, c: Context<SessionsEnv<Vars>>, next: Next, outgoing: ServerResponse, lease: RequestLease<Vars>, secure: boolean,
): Promise<void> {
  c.set('proc', lease.proc);
  cookieAtWriteHead(outgoing, { engine, lease, secure, writeHead: outgoing.writeHead as unknown as WriteHead });
  let handled: Promise<void>;
  try {
    handled = lease.run(next);
  } catch (error) {
    return Promise.reject(thrown(outgoing, lease, error));
  }
  holdWhileHandlerRuns(outgoing, lease);
  return handled.then(() => {
    releaseAfterResponse(outgoing, lease);
    // Set when a handler threw and app.onError answered: a failure is reported whoever answered it.
    const error = c.error;
    if (error === undefined) return;
    if (isFailure(error, outgoing)) {
      lease.fail(error);
    } else if (isClientError(error) && error instanceof SessionError && c.res.status === 500) {
      // Hono's onError knows nothing of a SessionError's status (readBody's 413): it answers here as in every adapter.
      const answer = errorAnswer(error);
      c.res = new Response(answer.body, { status: answer.status, headers: answer.headers });
    }
  }, (error: unknown) => {
    throw thrown(outgoing, lease, error);
  });
}

/**
 * Hono gives an Error to app.onError before it gets here; what arrives is a thrown non-Error, which
 * Hono passes on to the server (@hono/node-server answers a bare 500).
 */
function thrown<Vars extends SessionVars>(outgoing: ServerResponse, lease: RequestLease<Vars>, error: unknown): unknown {
  if (isFailure(error, outgoing)) lease.fail(error);
  releaseAfterResponse(outgoing, lease);
  return error;
}
