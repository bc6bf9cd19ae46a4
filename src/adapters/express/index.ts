import type { Express as ExpressApp, NextFunction, Request, RequestHandler, Response } from 'express';
import type { SessionEngine } from '../../engine.js';
import { SessionArgumentError, SessionError } from '../../errors.js';
import { acquireFor, errorAnswer, isClientError, isSecure, socketFacts } from '../../http/binding.js';
import { runRequestEventsIn } from '../../http/context.js';
import type { RequestVars } from '../../http/request-vars.js';
import { bindSession, sessionOf } from '../../http/bound-session.js';
import { appEndSeenOn } from '../../http/app-end.js';
import { closeWithItsConnection, isFailure } from '../../http/release.js';
import { cookieAtWriteHeadOf, sendErrorAnswer } from '../../http/response.js';
import type { RequestLease } from '../../lease.js';
import { isThenable, type MaybePromise } from '../../maybe-async.js';
import type { SessionVars, WebProcess } from '../../process.js';

declare global {
  // Express types its request through this global namespace: declaration merging is its idiom.
  namespace Express {
    interface Request {
      /**
       * The session's process this request runs in, set by `sessions(engine)` before the next middleware.
       * Type its `vars` once with `SessionTypes` (see `legacy-web-sessions`).
       */
      proc: WebProcess<RequestVars>;
    }
  }
}

/** Apps (and mounted sub-apps) that already have the error handler appended. */
const withErrorHandler = new WeakSet<object>();

/**
 * Express middleware: every request after it runs in its browser's session process, `req.proc`, one
 * request at a time per process. The session cookie is written with the response head (so a session
 * closed during the request answers with the clearing cookie) and the process is released once the
 * response is over. Refused requests get 400 (IP mismatch) or 503 (limits) and go no further.
 *
 * Errors: on its first request the middleware appends one error handler to the app (after everything
 * registered so far). An error no handler of yours answered is reported on the engine's `'error'` event
 * (`ERR_SESSION_HANDLER_FAILED`) and answered with a generic 500 (never the error's text or stack);
 * an error naming a 4xx status (http-errors) is passed on to Express as usual. Your own error handlers
 * run first; `next(err)` hands an error on. The session stays usable either way.
 *
 * After a client abort the process is released when the handler ends the response (`res.end()`, `send()`…),
 * so it is never released while the handler may still use it: end the response on every path. One
 * nobody ends is released `closeTimeoutMs` after the client left, reported as ERR_SESSION_DRAIN_TIMEOUT.
 *
 * @example
 * import express from 'express';
 * import { SessionEngine } from 'legacy-web-sessions';
 * import { sessions } from 'legacy-web-sessions/express';
 *
 * const engine = new SessionEngine({ init: () => ({ visits: 0 }) });
 * const app = express();
 * app.use(sessions(engine));
 * app.get('/', (req, res) => {
 *   res.send(`visit ${++(req.proc.vars as { visits: number }).visits}`);
 * });
 * app.listen(8080);
 */
export function sessions<Vars extends SessionVars = RequestVars>(engine: SessionEngine<Vars>): RequestHandler {
  if (typeof engine?.acquireNow !== 'function') throw new SessionArgumentError('sessions(engine): engine must be a SessionEngine');
  return function legacyWebSessions(req: Request, res: Response, next: NextFunction): void {
    // Registered again on the request's way (a router or a sub-app of an app that has it): the request
    // has its process already, and taking a second would wait behind its own first one.
    if (sessionOf(res) !== undefined) {
      next();
      return;
    }
    // req.app is the (sub-)app handling the request; Express types it without its response prototype.
    const app = req.app as ExpressApp;
    if (!withErrorHandler.has(app)) {
      withErrorHandler.add(app);
      app.use(answerHandlerErrors);
      // After a client left, the application's end() says it is done with the process: seen on the
      // prototype, whatever reference to res.end the handler holds. Hooked on the top-level app's, which
      // every mounted sub-app's chains to (Express chains a mounted app's response prototype to its
      // parent's): a request that falls back from a sub-app to its parent is seen too.
      let root = app as { parent?: unknown; response: ExpressApp['response'] };
      while (root.parent !== undefined) root = root.parent as typeof root;
      appEndSeenOn(root.response);
      // app.response is the prototype of the app's responses (Express's extension point): the cookie
      // is added at writeHead there once, rather than on every response. Only a top-level app's: a
      // mounted sub-app's responses get it on the instance (see start), and twice would be two cookies.
      if ((app as { parent?: unknown }).parent === undefined) cookieAtWriteHeadOf(app.response);
    }
    // The client's address follows the engine's trustProxy option, as in every adapter (not Express's 'trust proxy').
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
      start(engine, app, req, res, next, acquired, isSecure(engine, facts));
      return;
    }
    void Promise.resolve(acquired).then((lease) => start(engine, app, req, res, next, lease, isSecure(engine, facts)), (error: unknown) => sendErrorAnswer(res, errorAnswer(error)));
  };
}

function start<Vars extends SessionVars>(engine: SessionEngine<Vars>, app: ExpressApp, req: Request, res: Response, next: NextFunction, lease: RequestLease<Vars>, secure: boolean): void {
  req.proc = lease.proc as WebProcess<RequestVars>;
  // A mounted sub-app's prototype is left when the request goes back to its parent: only a
  // top-level app's can carry the cookie for the whole response. Nor can it when a middleware ahead
  // put a writeHead of its own on the response (on-headers: compression, morgan): that one may call the
  // writeHead it read before the prototype had the cookie (the app's first request), so the cookie is
  // added on the instance too (the prototype's then leaves it out: one cookie).
  bindSession(res, engine, lease, secure, (app as { parent?: unknown }).parent === undefined && Object.getPrototypeOf(res) === app.response && !Object.hasOwn(res, 'writeHead'));
  runRequestEventsIn(req, lease);
  lease.run(next);
}

/** The appended error handler (four parameters: that is how Express knows it handles errors). */
function answerHandlerErrors(error: unknown, _req: Request, res: Response, next: NextFunction): void {
  const session = sessionOf(res);
  if (session === undefined || (isClientError(error) && !(error instanceof SessionError))) {
    next(error); // Express answers the client errors it knows (http-errors: status, headers, exposed message)
    return;
  }
  if (isFailure(error, res)) session.lease.fail(error);
  // The handler has failed: it is done with the process, whether or not it had ended the response
  // (after the head was sent, an unfinished response is cut and one the application ended is left whole;
  // no application end() follows either way).
  session.handlerSettled();
  sendErrorAnswer(res, errorAnswer(error));
}
