import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { isClientError } from './binding.js';
import { onAppEnd, type End } from './app-end.js';
import type { LeaseHandle } from './response.js';

// When a request's process goes back: exactly once, after the response is over, never while the
// handler may still use it.

const kRelease = Symbol('legacy-web-sessions.release');
type ReleaseLease = Pick<LeaseHandle, 'release' | 'releaseAtTheLatest' | 'holdAndReportAtTheLatest'>;
/**
 * A response's release, once its 'close' is listened to: one object under one symbol, not three
 * properties added to every ServerResponse (each a hidden-class transition, and their backing store
 * grown) on the way of every request whose handler returns a promise.
 */
interface ReleaseState {
  readonly lease: ReleaseLease;
  handlerRunning: boolean;
  /** The response emitted 'close'. */
  closed: boolean;
}
type ReleasingResponse = ServerResponse & { [kRelease]?: ReleaseState };

/**
 * Node never emits 'close' on the response of a pipelined request queued behind another on its
 * connection when the connection goes (it never got the socket): every rule here that waits for a
 * response's 'close' (the release after its client left, the deadline of a handler that never ends)
 * would wait for ever, and a client pipelining requests then hanging up could keep sessions busy for
 * good. Such a response is destroyed and closed with its connection, as Node's own 'close' says
 * ("its underlying connection was terminated prematurely"). Call before binding the response; a
 * request at the head of its connection costs a property read.
 */
export function closeWithItsConnection(req: IncomingMessage, res: ServerResponse): void {
  if (res.socket !== null) return;
  const connection = req.socket;
  if (connection.destroyed) {
    closeIfStillQueued(res);
    return;
  }
  // One listener per connection, however many requests a client pipelines on it.
  let queued = queuedOn.get(connection);
  if (queued === undefined) {
    const responses = new Set<ServerResponse>();
    queuedOn.set(connection, responses);
    connection.once('close', () => {
      queuedOn.delete(connection); // also says, to watchEndWhileQueued, that this listener has run
      for (const waiting of responses) closeIfStillQueued(waiting);
      responses.clear();
    });
    queued = responses;
  }
  const waiting = queued;
  waiting.add(res);
  // Its turn came: Node closes it from then on (and a connection kept open must not hold it).
  res.once('socket', () => waiting.delete(res));
  watchEndWhileQueued(res, connection);
}

/**
 * Emitted (once) on a response the application ended or destroyed while it waited for its turn on its
 * connection: its 'close' comes only once the responses ahead of it are written, however long their
 * handlers take, so a release waiting for 'close' would keep its session busy that long (not evictable,
 * its other requests waiting, a closeSession waiting on it until closeTimeoutMs).
 */
export const kEndedWhileQueued = Symbol('legacy-web-sessions.ended-while-queued');

/** Only on a pipelined response waiting for its turn: a wrapper on its own end and destroy. */
function watchEndWhileQueued(res: ServerResponse, connection: Socket): void {
  const end = res.end as unknown as End;
  const destroy = res.destroy as unknown as End;
  let told = false;
  const tell = (): void => {
    if (told) return;
    told = true;
    res.emit(kEndedWhileQueued);
  };
  const watch = (original: End): End => function (this: ServerResponse, ...args) {
    const result = original.apply(this, args);
    // Not the engine's own destroy of a response whose connection went (closeIfStillQueued), nor Node's
    // (Node 24, not 20, destroys the queued responses of a closed connection itself, with an 'aborted'
    // ECONNRESET, in its 'close' listener, which runs before the engine's): that is its client leaving,
    // which says nothing of the handler being done.
    if (!told && res.socket === null && !closingWithItsConnection.has(res) && (res.writableEnded || res.destroyed)) {
      if (!(connection.destroyed && cutByItsClient(args[0]))) tell();
      // Such a destroy from the application itself (pipeline(upstream, res) passing on an aborted
      // upstream's error) can come while its connection is destroyed, before that connection's 'close':
      // Node's comes during that 'close', and the engine's listener, later in the same emit, forgets the
      // connection before any microtask runs.
      else queueMicrotask(() => { if (queuedOn.has(connection)) tell(); });
    }
    return result;
  };
  res.end = watch(end) as unknown as ServerResponse['end'];
  res.destroy = watch(destroy) as unknown as ServerResponse['destroy'];
}

/** The response is queued on its connection: the application's end() of it says when it is over (`kEndedWhileQueued`). */
export function isQueued(res: ServerResponse): boolean {
  return res.socket === null && !isGone(res);
}

/** Queued responses the engine destroys because their connection went (not the application's end). */
const closingWithItsConnection = new WeakSet<ServerResponse>();

/** The responses of each open connection still waiting for their turn. */
const queuedOn = new WeakMap<Socket, Set<ServerResponse>>();

function closeIfStillQueued(res: ServerResponse): void {
  // Given the socket meanwhile: Node's own 'close' comes with it (or came: it has finished).
  if (res.socket !== null || res.writableFinished || res.destroyed) return;
  closingWithItsConnection.add(res);
  res.destroy();
  // As Node closes a response whose connection went (onServerResponseClose): marked closed too, or
  // stream.finished (pipeline(source, res), Fastify's reply.then) attached later waits for ever.
  (res as ServerResponse & { _closed: boolean })._closed = true;
  res.emit('close');
}

/**
 * The handler returned a promise (node:http, Hono): the process is its until it settles, even if its
 * client leaves meanwhile (requests of one process never overlap); one still running `closeTimeoutMs`
 * after its response was cut is reported (see `holdAndReportAtTheLatest`). Call `releaseAfterResponse`
 * once it settles.
 */
export function holdWhileHandlerRuns(res: ServerResponse, lease: Pick<LeaseHandle, 'release' | 'releaseAtTheLatest' | 'holdAndReportAtTheLatest'>): void {
  if (isGone(res)) {
    if (wasCut(res)) lease.holdAndReportAtTheLatest();
    return;
  }
  (res as ReleasingResponse)[kRelease] = { lease, handlerRunning: true, closed: false };
  res.on('close', releaseOnClose);
}

/**
 * The handler is done with `proc`: release once the response is over too (ended, or the client left).
 * For adapters that see the handler settle (node:http, Hono).
 */
export function releaseAfterResponse(res: ServerResponse, lease: Pick<LeaseHandle, 'release' | 'releaseAtTheLatest' | 'holdAndReportAtTheLatest'>): void {
  const releasing = res as ReleasingResponse;
  const state = releasing[kRelease];
  if (state !== undefined) state.handlerRunning = false;
  // Closed already (its 'close' came while the handler ran): an HTTP/2 stream the client reset says
  // neither ended nor destroyed, and no other 'close' will come.
  if (res.writableEnded || isGone(res) || state?.closed === true) {
    lease.release();
  } else if (state === undefined) {
    releasing[kRelease] = { lease, handlerRunning: false, closed: false };
    res.on('close', releaseOnClose);
  }
}

function releaseOnClose(this: ReleasingResponse): void {
  const state = this[kRelease];
  if (state === undefined) return;
  state.closed = true;
  if (!state.handlerRunning) state.lease.release();
  else if (wasCut(this)) state.lease.holdAndReportAtTheLatest();
}

/**
 * The response is over for good (destroyed, or its client left). An HTTP/2 compatibility response whose
 * stream was reset says so only on its stream (it has no `destroyed`): its 'close' has come already.
 */
export function isGone(res: ServerResponse): boolean {
  return res.destroyed || (res as { stream?: { destroyed?: boolean } }).stream?.destroyed === true;
}

/**
 * The response, or the connection under it, is destroyed. Checked before and after a synchronous handler
 * run: no I/O comes in between, so what the run left destroyed, the handler cut itself (`res.destroy()`,
 * `req.socket.destroy()`), and it is done with the response; a hang-up shows only later.
 */
export function isCut(res: ServerResponse): boolean {
  // A pipelined response waiting for its turn has no socket yet: its request has the connection.
  return isGone(res) || (res.socket ?? res.req.socket).destroyed;
}

/**
 * The response is over without having finished: its client left (or it was destroyed) before the
 * application's end() went out. An HTTP/2 response whose stream the client reset says writableFinished
 * (its stream is done) though the application never ended it.
 */
export function wasCut(res: ServerResponse): boolean {
  return !res.writableFinished || !res.writableEnded;
}

/**
 * The handler returned without ending the response (node:http, a callback-style handler): its work goes
 * on in callbacks, and the response ending is what says it is done. If the client leaves first, the
 * release waits for the application's `end()`, at most `closeTimeoutMs` (see `releaseAtTheLatest`).
 */
export function releaseWhenAppEnds(res: ServerResponse, lease: Pick<LeaseHandle, 'release' | 'releaseAtTheLatest'>, destroyedByHandler: boolean): void {
  // Ended, or cut by the handler itself (res.destroy() during its synchronous run: no hang-up can come
  // in before it returns): the handler is done with the response.
  if (res.writableEnded || destroyedByHandler) {
    lease.release();
    return;
  }
  const leftOrEnded = (): void => {
    if (res.writableEnded) {
      lease.release();
      return;
    }
    onAppEnd(res, () => lease.release());
    lease.releaseAtTheLatest();
  };
  if (isGone(res)) {
    leftOrEnded();
    return;
  }
  res.once('close', leftOrEnded);
  if (isQueued(res)) res.once(kEndedWhileQueued, () => lease.release());
}

/**
 * Whether an error a handler let escape is the application's failure, reported on `'error'`: not an
 * error naming a 4xx status (an answer: `isClientError`), nor a stream its client cut by leaving, which
 * is no more a failure than a client leaving readBody: a download cancelled (`pipeline(source, res)`
 * rejects with ERR_STREAM_PREMATURE_CLOSE once the response is gone), a request body cut mid-way and
 * read by the application itself (Node's 'aborted' ECONNRESET; Hono's `c.req.text()` passes it on), or
 * any error at all once a request body its client cut mid-way is gone with it.
 */
export function isFailure(error: unknown, res: ServerResponse): boolean {
  if (isClientError(error)) return false;
  return !((cutByItsClient(error) || bodyCutByItsClient(res)) && isGone(res));
}

/**
 * The request's body never arrived whole and its client has gone: whatever a body reader says then
 * (multer's "Request aborted", busboy's "Unexpected end of form", an application's own) is the client's doing.
 */
function bodyCutByItsClient(res: ServerResponse): boolean {
  const { req, stream } = res as { req?: { complete?: boolean; aborted?: boolean }; stream?: { endAfterHeaders?: boolean } };
  // HTTP/2: an Http2ServerRequest says complete once its stream is reset, whatever arrived. Reset while
  // the handler ran (aborted), a request with a body (its headers did not end the stream) is taken as
  // cut mid-body: what came of its body before the reset cannot be told afterwards.
  if (stream !== undefined) return req?.aborted === true && stream.endAfterHeaders !== true;
  return req?.complete === false;
}

function cutByItsClient(error: unknown): boolean {
  try {
    const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
    return code === 'ERR_STREAM_PREMATURE_CLOSE' || (code === 'ECONNRESET' && message === 'aborted');
  } catch {
    return false; // its getters throw (a revoked Proxy): nothing says a client cut it
  }
}
