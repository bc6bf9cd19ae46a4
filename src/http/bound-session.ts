import type { ServerResponse } from 'node:http';
import type { CookieEngine } from './binding.js';
import { onAppEnd } from './app-end.js';
import { isCut, isGone, isQueued, kEndedWhileQueued, wasCut } from './release.js';
import { cookieAtWriteHead, responseState, setResponseState, type CookieState, type LeaseHandle, type WriteHead } from './response.js';

/**
 * A request's session on its response, for frameworks that hand the ServerResponse around (Express,
 * Fastify): what the cookie needs, and the release rule. The handler's end is not always visible there:
 * until `handlerStarted()`/`handlerSettled()` say otherwise, the application ending the response marks
 * the end of its work, and if the client leaves first the release waits for that `end()` (the handler
 * may still be using `proc`). Found again with `sessionOf(res)` by error handlers and hooks.
 */
export class BoundSession implements CookieState {
  readonly engine: CookieEngine;
  readonly lease: LeaseHandle;
  readonly secure: boolean;
  readonly writeHead: WriteHead | undefined;
  readonly #res: ServerResponse;
  #handler: 'unseen' | 'running' | 'settled' = 'unseen';
  #cutBeforeHandler = false;
  #closed: boolean;
  /** The application ended (or destroyed) the response while it was queued on its connection. */
  #endedWhileQueued = false;
  #appEnded = false;
  #watchingEnd = false;
  #gaveUpResponse: ((subject: object) => boolean) | undefined;
  #subject: object | undefined;
  /** The framework's reply the handler returned resolved because its client left (see replyResolvedByACut). */
  #settledByItsCutReply = false;
  /**
   * An error of this request was seen (adapters that see several judge the first: the later ones are
   * its echoes, such as the error answer that cannot be written after the head went out).
   */
  errorSeen = false;

  constructor(res: ServerResponse, engine: CookieEngine, lease: LeaseHandle, secure: boolean, writeHead: WriteHead | undefined) {
    this.engine = engine;
    this.lease = lease;
    this.secure = secure;
    this.writeHead = writeHead;
    this.#res = res;
    this.#closed = false;
  }

  /**
   * `gaveUpResponse(subject)` (Fastify: the reply was hijacked) is asked when the response is over while
   * the handler runs; true means the handler will not be seen to settle, so the application ending the
   * response marks the end of its work instead.
   */
  handlerStarted<T extends object>(gaveUpResponse?: (subject: T) => boolean, subject?: T): void {
    this.#handler = 'running';
    this.#cutBeforeHandler = isCut(this.#res);
    this.#gaveUpResponse = gaveUpResponse as ((subject: object) => boolean) | undefined;
    this.#subject = subject;
  }

  /**
   * The handler returned without a promise: done if it has ended its response; else its work goes on in
   * callbacks, and its end() of the response says when it is done (as where the handler is unseen).
   */
  handlerReturned(): void {
    this.#handler = this.#res.writableEnded || (isCut(this.#res) && !this.#cutBeforeHandler) ? 'settled' : 'unseen';
    this.#check();
  }

  handlerSettled(): void {
    // Settled by its reply's close (Fastify's `return reply`, sending later from a callback), not by
    // its work: that work may go on, and its end() of the response says when it is done.
    this.#handler = this.#settledByItsCutReply && !this.#res.writableEnded ? 'unseen' : 'settled';
    this.#check();
  }

  /**
   * The framework's reply, awaited or returned by the handler (Fastify's `return reply`), resolved
   * because the response closed without the application having ended it (its client left).
   */
  replyResolvedByACut(): void {
    this.#settledByItsCutReply = true;
  }

  /** @internal the response emitted 'close'. */
  responseClosed(): void {
    this.#closed = true;
    this.#check();
  }

  /** @internal the application ended the response while it was queued behind others on its connection. */
  responseEndedWhileQueued(): void {
    this.#endedWhileQueued = true;
    this.#check();
  }

  #check(): void {
    if (this.lease.released) return;
    // Over: closed, or ended while queued (its 'close' waits for the responses ahead of it).
    const over = this.#closed || this.#endedWhileQueued;
    if (this.#handler === 'running' && over && this.#subject !== undefined && this.#gaveUpResponse?.(this.#subject) === true) this.#handler = 'unseen';
    if (this.#handler === 'running') {
      // Closed while its handler runs: released when it settles, however long (requests of one process
      // never overlap); if the response was cut (its client left), a handler still running after
      // closeTimeoutMs is reported (one that gave up its response by then, hijacked, is released).
      if (this.#closed && wasCut(this.#res)) {
        // A handler that hijacks its reply later is never seen to settle: its end() of the raw response
        // then says it is done.
        if (!this.#watchingEnd) this.#watchEnd();
        this.lease.releaseAtTheLatest(this.#stillRunning);
      }
      return;
    }
    const res = this.#res;
    const ended = this.#appEnded || res.writableEnded;
    if (this.#handler === 'settled' ? ended || this.#closed || isGone(res) : over && ended) {
      this.lease.release();
    } else if (this.#closed) {
      if (!this.#watchingEnd) this.#watchEnd();
      // Armed when the client left: by the deadline the handler may have started (its client left while
      // the request waited for the process) and be seen running, which keeps the process.
      this.lease.releaseAtTheLatest(this.#stillRunning);
    }
  }

  /** The handler runs and will be seen to settle (not hijacked meanwhile). */
  readonly #stillRunning = (): boolean =>
    this.#handler === 'running' && !(this.#subject !== undefined && this.#gaveUpResponse?.(this.#subject) === true);

  /** The client left before the application answered: its end() call says it is done with the process. */
  #watchEnd(): void {
    this.#watchingEnd = true;
    onAppEnd(this.#res, () => {
      this.#appEnded = true;
      this.#check();
    });
  }
}

/**
 * Binds a request's response to its lease (Express, Fastify). `writeHeadOnPrototype`: the framework's
 * response prototype already adds the cookie (`cookieAtWriteHeadOf`); else it is added on this instance.
 */
export function bindSession(res: ServerResponse, engine: CookieEngine, lease: LeaseHandle, secure: boolean, writeHeadOnPrototype = false): BoundSession {
  const session = new BoundSession(res, engine, lease, secure, writeHeadOnPrototype ? undefined : res.writeHead as unknown as WriteHead);
  if (writeHeadOnPrototype) setResponseState(res, session);
  else cookieAtWriteHead(res, session);
  // A client that left while the request waited for its process has had its 'close' already.
  if (isGone(res)) session.responseClosed();
  else {
    res.on('close', sessionOnClose);
    if (isQueued(res)) res.once(kEndedWhileQueued, sessionOnEndedWhileQueued);
  }
  return session;
}

function sessionOnClose(this: ServerResponse): void {
  sessionOf(this)?.responseClosed();
}

function sessionOnEndedWhileQueued(this: ServerResponse): void {
  sessionOf(this)?.responseEndedWhileQueued();
}

/** The session `bindSession` attached to this response, if the request got one. */
export function sessionOf(res: ServerResponse): BoundSession | undefined {
  const state = responseState(res);
  return state instanceof BoundSession ? state : undefined;
}
