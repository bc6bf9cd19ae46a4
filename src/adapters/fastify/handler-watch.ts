// How the Fastify plugin sees a route handler start and settle, which Fastify's hooks do not say: its
// documented tracing channel, and its Reply's then/send for handlers that return the reply.
import { tracingChannel, type TracingChannelSubscribers } from 'node:diagnostics_channel';
import type { ServerResponse } from 'node:http';
import { sessionOf } from '../../http/bound-session.js';
import { isFailure, isQueued, kEndedWhileQueued } from '../../http/release.js';

interface HandlerTrace {
  readonly reply: { readonly raw: ServerResponse; readonly sent?: boolean } & object;
  /** Set by Fastify when the handler threw or rejected. */
  readonly error?: unknown;
  /** Set by Fastify when the handler returned a promise: it is done at asyncEnd, not at end. */
  readonly async?: boolean;
}

let watching = false;

/**
 * Fastify's own mark of a hijacked reply (a symbol it does not export), once found: a reply of the root
 * context carries it only from its hijack() on, so a reply without it says nothing about the others.
 */
let hijackedMark: symbol | undefined;

/**
 * Whether the handler took the response over with `reply.hijack()`: Fastify then never reports an async
 * handler settled. Should the mark not be found (another Fastify version), the release falls back on
 * its deadline (closeTimeoutMs after the response was over).
 */
function isHijacked(reply: object): boolean {
  hijackedMark ??= Object.getOwnPropertySymbols(reply).find((symbol) => symbol.description === 'fastify.reply.hijacked');
  return hijackedMark !== undefined && (reply as Record<symbol, unknown>)[hijackedMark] === true;
}

/**
 * Fastify's documented tracing channel says when a route handler starts and settles, so the process is
 * held until then even if the client leaves first. Routes without it (the 404 handler) fall back to the
 * response being ended. One subscription per process, shared by every app.
 */
export function watchHandlers(): void {
  if (watching) return;
  watching = true;
  tracingChannel<object, HandlerTrace>('fastify.request.handler').subscribe({
    start: (trace) => {
      watchReplies(trace.reply);
      sessionOf(trace.reply.raw)?.handlerStarted(isHijacked, trace.reply);
    },
    end: (trace) => {
      if (trace.async !== true) sessionOf(trace.reply.raw)?.handlerReturned();
    },
    asyncEnd: (trace) => sessionOf(trace.reply.raw)?.handlerSettled(),
    error: (trace) => {
      // A reply already sent (ended, or hijacked) when its handler fails: Fastify only logs the error
      // ("Reply was already sent", "Promise errored, but reply.sent = true"), no onError hook runs.
      if (trace.reply.sent !== true) return;
      const session = sessionOf(trace.reply.raw);
      if (session === undefined || session.errorSeen) return;
      session.errorSeen = true;
      if (isFailure(trace.error, trace.reply.raw)) session.lease.fail(trace.error);
    },
    // No asyncStart: nothing to do there, and its channel left without a subscriber publishes nothing
    // (Node's subscribe() skips an event without a handler; @types/node asks for all five).
  } as TracingChannelSubscribers<HandlerTrace>);
}

/** Reply prototypes (one per Fastify context) already looked at, and the owners of the methods wrapped. */
const replyProtosSeen = new WeakSet<object>();
const thenWrapped = new WeakSet<object>();
const sendWrapped = new WeakSet<object>();
/** On a reply sent through Fastify (`reply.send`): once its head is out, Fastify owns the rest of it. */
const kSentByFastify = Symbol('legacy-web-sessions.sent-by-fastify');

type Method = (this: ReplyLike, ...args: unknown[]) => unknown;
type ReplyLike = { readonly raw: ServerResponse; [kSentByFastify]?: boolean };

/**
 * `return reply` (Fastify's idiom for an async handler that sends later, from a callback) settles the
 * handler's promise through `reply.then`, which resolves when the response closes, also when its client
 * left before the callback sent anything: that callback still uses the process. Seen here, once per
 * Reply prototype: such a handler is done when it ends the response (as a callback-style handler),
 * unless Fastify sent the reply and its head went out (`return reply.send(stream)`): Fastify owns the
 * rest, and may never end a response whose client left (a web stream's reader is only cancelled).
 */
function watchReplies(reply: object): void {
  const direct = Object.getPrototypeOf(reply) as object | null;
  if (direct === null || replyProtosSeen.has(direct)) return;
  replyProtosSeen.add(direct);
  wrapOnce(direct, 'send', sendWrapped, (send) => function (this: ReplyLike) {
    this[kSentByFastify] = true;
    // `arguments`, not a rest parameter: passed on as given, without an array per call.
    return send.apply(this, arguments as unknown as unknown[]);
  });
  wrapOnce(direct, 'then', thenWrapped, (then) => function (this: ReplyLike, fulfilled?: unknown, rejected?: unknown) {
    const session = sessionOf(this.raw);
    if (session === undefined || typeof fulfilled !== 'function') return then.call(this, fulfilled, rejected);
    const reply = this;
    let resolved = false;
    const onFulfilled = function (this: unknown, ...args: unknown[]): unknown {
      if (resolved) return undefined;
      resolved = true;
      const raw = reply.raw;
      if (!raw.writableEnded && !(raw.headersSent && reply[kSentByFastify] === true)) session.replyResolvedByACut();
      return (fulfilled as Method).apply(this as ReplyLike, args);
    };
    // A pipelined response queued behind others finishes (Fastify's eos) only once they are written:
    // ended meanwhile, it is sent (what Fastify's own then says of a reply already sent), not later.
    const raw = this.raw;
    if (isQueued(raw) && !raw.writableEnded) raw.once(kEndedWhileQueued, () => { if (raw.writableEnded) onFulfilled(); });
    return then.call(this, onFulfilled, rejected);
  });
}

/** Wraps `name` where `proto` finds it (its own or inherited), once per owner. */
function wrapOnce(proto: object, name: 'send' | 'then', done: WeakSet<object>, wrap: (original: Method) => Method): void {
  let owner: object | null = proto;
  while (owner !== null && !Object.hasOwn(owner, name)) owner = Object.getPrototypeOf(owner) as object | null;
  if (owner === null || done.has(owner)) return;
  done.add(owner);
  Object.defineProperty(owner, name, { value: wrap((owner as Record<typeof name, Method>)[name]), writable: true, configurable: true });
}
