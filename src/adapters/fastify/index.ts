import type { FastifyError, FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify';
import fastifyPlugin from 'fastify-plugin';
import type { SessionEngine } from '../../engine.js';
import { SessionArgumentError, SessionError } from '../../errors.js';
import { acquireFor, closeConnectionFor, errorAnswer, headersFor, isClientError, isSecure, socketFacts } from '../../http/binding.js';
import { runRequestEventsIn } from '../../http/context.js';
import type { RequestVars } from '../../http/request-vars.js';
import { bindSession, sessionOf } from '../../http/bound-session.js';
import { closeWithItsConnection, isFailure } from '../../http/release.js';
import { describesTheAnswer } from '../../http/response.js';
import { watchHandlers } from './handler-watch.js';
import type { RequestLease } from '../../lease.js';
import { isThenable, type MaybePromise } from '../../maybe-async.js';
import type { SessionVars, WebProcess } from '../../process.js';

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * The session's process this request runs in, set in `onRequest` (null only in hooks that run
     * before it, or when the request was refused). Type its `vars` once with `SessionTypes`.
     */
    proc: WebProcess<RequestVars>;
  }
}

/** Options of `app.register(sessions, { engine })`. */
export interface SessionsOptions {
  /**
   * The engine, of any vars type (`request.proc.vars` is typed by `SessionTypes`): what the plugin
   * uses of it, since a `SessionEngine<Vars>` is not assignable to one of another vars type.
   */
  engine: Pick<SessionEngine<SessionVars>, 'acquireNow' | 'getOption' | 'stop'>;
  /**
   * Installs the error handler of the root scope: a failing handler gets a generic 500 (Fastify's
   * default answer carries the error's message). `false` if you set your own there (calling
   * `setErrorHandler` twice in one scope makes Fastify warn).
   * @default true
   */
  errorHandler?: boolean;
}

const plugin: FastifyPluginCallback<SessionsOptions> = (fastify, options, done) => {
  const { engine, errorHandler = true } = options;
  if (typeof engine?.acquireNow !== 'function') {
    done(new SessionArgumentError('register(sessions, { engine }): engine must be a SessionEngine'));
    return;
  }
  watchHandlers();
  // Declared up front so every request object has the same shape (Fastify's own advice for speed).
  // Registered again in a child scope (the root and an encapsulated plugin): declared once.
  if (!fastify.hasRequestDecorator('proc')) fastify.decorateRequest('proc', null, []);

  fastify.addHook('onRequest', (request, reply, next) => {
    // Registered again on the request's way: the request has its process already, and taking a second
    // would wait behind its own first one.
    if (sessionOf(reply.raw) !== undefined) {
      next();
      return;
    }
    // The client's address follows the engine's trustProxy option, as in every adapter (not Fastify's own).
    closeWithItsConnection(request.raw, reply.raw);
    const facts = socketFacts(request.raw);
    let acquired: MaybePromise<RequestLease<SessionVars>>;
    try {
      acquired = acquireFor(engine, facts);
    } catch (error) {
      refuse(reply, error);
      return;
    }
    if (!isThenable(acquired)) {
      start(engine, request, reply, next, acquired, isSecure(engine, facts));
      return;
    }
    acquired.then((lease) => start(engine, request, reply, next, lease, isSecure(engine, facts)), (error: unknown) => refuse(reply, error));
  });

  // onError runs before any error handler, ours or yours: every failure is reported once, whoever answers.
  fastify.addHook('onError', (_request, reply, error, next) => {
    const session = sessionOf(reply.raw);
    // Once per request: an error answering the first (the head already sent by the handler) is its echo.
    if (session !== undefined && !session.errorSeen) {
      if (isFailure(error, reply.raw)) {
        session.errorSeen = true;
        session.lease.fail(error);
      } else if (!isClientError(error) || reply.raw.headersSent) {
        // its client cut the stream, or a 4xx answer that cannot be written (the head went out
        // already): the error answering it (ERR_HTTP_HEADERS_SENT) is its echo
        session.errorSeen = true;
      }
    }
    next();
  });

  if (errorHandler) fastify.setErrorHandler(answerErrors);

  // The stop starts in preClose, before Fastify's server waits for its in-flight requests: it aborts
  // their processes' signals and bounds their drain by closeTimeoutMs. Started in onClose (after that
  // wait), a handler waiting on its signal would hold app.close() for ever, every hook with it.
  let stopping: Promise<void> | undefined;
  fastify.addHook('preClose', (next) => {
    stopping = engine.stop();
    next();
  });
  fastify.addHook('onClose', (_instance, next) => {
    (stopping ?? engine.stop()).then(() => next(), next);
  });
  done();
};

function start(engine: SessionsOptions['engine'], request: FastifyRequest, reply: FastifyReply, next: (error?: Error) => void, lease: RequestLease<SessionVars>, secure: boolean): void {
  request.proc = lease.proc as WebProcess<RequestVars>;
  bindSession(reply.raw, engine, lease, secure);
  // Fastify's own body parsers carry the context across the body's stream events; this covers a
  // handler that reads request.raw itself (a pass-through content-type parser).
  runRequestEventsIn(request.raw, lease);
  // Its client left while it waited for the process, before its body was read, and Fastify will parse
  // one: its parser would listen on a request already destroyed and wait for ever (nor would the
  // handler run), holding the process until closeTimeoutMs. Answered at once (to nobody) as a client
  // error, which is not reported. (A body read to its end, by a hook, also leaves the request destroyed.)
  if (leftBeforeItsBody(request.raw) && willParseBody(request.raw)) {
    lease.run(() => next(Object.assign(new Error('the client left before its request body was read'), { statusCode: 400 })));
    return;
  }
  // Everything after this hook starts in the process's context (engine.currentSessionId(), a logout
  // seen as from inside).
  lease.run(next);
}

/**
 * The request's client left before its body was read: aborted (HTTP/1.1 sets it when a request is
 * destroyed unread; an HTTP/2 stream reset ends the request, unread), or destroyed and not ended. A body
 * an earlier hook read to its end leaves the request destroyed too, but ended and not aborted.
 */
function leftBeforeItsBody(raw: FastifyRequest['raw']): boolean {
  return (raw as { aborted?: boolean }).aborted === true || (raw.destroyed && !raw.readableEnded);
}

/** Whether Fastify runs a content-type parser on the request (as its route handling decides). */
function willParseBody(raw: FastifyRequest['raw']): boolean {
  if (raw.method === 'GET' || raw.method === 'HEAD') return false;
  const length = raw.headers['content-length'];
  return raw.headers['content-type'] !== undefined || (length !== undefined && length !== '0') || raw.headers['transfer-encoding'] !== undefined;
}

function refuse(reply: FastifyReply, error: unknown): void {
  const answer = errorAnswer(error);
  closeConnectionFor(answer, reply.request.raw);
  reply.code(answer.status).headers(headersFor(answer, reply.request.raw.httpVersionMajor)).send(answer.body);
}

/**
 * Fastify plugin (wrapped with fastify-plugin, so it applies to the whole app): every request runs in
 * its browser's session process, `request.proc`, one request at a time per process. The session
 * cookie is written with the response head (so a session closed during the request answers with the
 * clearing cookie); the process is released once the handler has settled and the response is over.
 * Refused requests get 400 (IP mismatch) or 503 (limits) from `onRequest`. `app.close()` stops the
 * engine (`onClose`), running every session's `onClose` hook with `'shutdown'`.
 *
 * Errors: a failing handler is reported on the engine's `'error'` event (`ERR_SESSION_HANDLER_FAILED`)
 * and, with the default `errorHandler: true`, answered with a generic 500 (logged through
 * `request.log.error`, never sent). Errors naming a 4xx status (validation, `httpErrors`) get Fastify's
 * usual answer and are not reported. The session stays usable either way.
 *
 * @example
 * import Fastify from 'fastify';
 * import { SessionEngine } from 'legacy-web-sessions';
 * import { sessions } from 'legacy-web-sessions/fastify';
 *
 * const engine = new SessionEngine({ init: () => ({ visits: 0 }) });
 * const app = Fastify();
 * app.register(sessions, { engine });
 * app.get('/', async (request) => {
 *   const vars = request.proc.vars as { visits: number };
 *   return `visit ${++vars.visits}`;
 * });
 * await app.listen({ port: 8080 });
 */
export const sessions = fastifyPlugin(plugin, { name: 'legacy-web-sessions', fastify: '5.x' });

function answerErrors(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  if (isClientError(error) && !(error instanceof SessionError)) {
    // Sent from an error handler, the error goes on to the next one up: Fastify's default answer.
    reply.send(error);
    return;
  }
  if (!isClientError(error)) request.log.error({ err: error }, 'request handler failed');
  // A SessionError's status is its own (readBody's 413); anything else is the generic 500.
  const answer = errorAnswer(error);
  // Headers the failed handler had set for its answer belong to the answer it did not finish; those of
  // the response (CORS, Vary, security headers set by hooks) stay.
  for (const name of Object.keys(reply.getHeaders())) if (describesTheAnswer(name)) reply.removeHeader(name);
  // Connection: close (ERR_SESSION_STOPPED) is HTTP/1.1's only: HTTP/2 forbids it (Node drops it with a
  // warning), and closes the connection its own way.
  closeConnectionFor(answer, request.raw);
  reply.code(answer.status).headers(headersFor(answer, request.raw.httpVersionMajor)).send(answer.body);
}
