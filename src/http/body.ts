import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { SessionArgumentError, SessionError } from '../errors.js';

/** A request body as every Node framework exposes it: a readable stream with the request's headers. */
export type BodySource = Readable & { readonly headers: IncomingHttpHeaders; readonly complete?: boolean };

export interface ReadBodyOptions {
  /** Largest body accepted, in bytes; one byte more rejects with `ERR_SESSION_BODY_TOO_LARGE` (413). @default 102_400 (100 KiB) */
  maxBytes?: number;
}

/** Same default as body-parser: enough for any form, small enough that a session cannot be used to fill memory. */
export const DEFAULT_MAX_BODY_BYTES = 100 * 1024;

/**
 * Reads a whole request body, refusing more than `maxBytes`: at once when `content-length` says so,
 * else as soon as the bytes counted pass the limit. A refused body is discarded, not buffered, and the
 * stream keeps flowing so the 413 answer reaches the client and a keep-alive connection stays usable
 * (destroying the request would cut the socket before the answer). The server's `requestTimeout`
 * bounds a client that never stops sending. A client that leaves before the end rejects it with
 * `ERR_SESSION_BODY_ABORTED` (400): let it through and the adapter answers 400 without reporting it.
 *
 * @example
 * createServer(engine, async (req, res, proc) => {
 *   const body = await readBody(req, { maxBytes: 16 * 1024 }); // throws a SessionError with httpStatus 413
 *   res.end(`${body.length} bytes`);
 * });
 */
export function readBody(req: BodySource, options: ReadBodyOptions = {}): Promise<Buffer> {
  if (typeof req?.on !== 'function' || typeof req.headers !== 'object' || req.headers === null) return Promise.reject(new SessionArgumentError('readBody(req): req must be the request (a readable stream with headers)'));
  if (typeof options !== 'object' || options === null) return Promise.reject(new SessionArgumentError('readBody(req, options): options must be an object'));
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BODY_BYTES;
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) return Promise.reject(new SessionArgumentError(`readBody: maxBytes must be an integer >= 0, got ${String(maxBytes)}`));

  const declared = declaredLength(req.headers['content-length']);
  if (declared !== undefined && declared > maxBytes) {
    req.resume();
    return Promise.reject(tooLarge(`content-length ${declared} > ${maxBytes}`));
  }
  // Aborted: its client left while it was unread (an HTTP/2 stream reset also ends it, its bytes gone).
  const wasAborted = (req as { aborted?: boolean }).aborted === true;
  // A request without a body has an empty one, even if its client has left since (a queued request
  // whose turn came after the hang-up still runs, as every request of a session does).
  if ((req.destroyed || wasAborted) && hasNoBody(req, declared)) return Promise.resolve(Buffer.alloc(0));
  if (wasAborted) return Promise.reject(aborted());
  if (req.readableEnded) return Promise.resolve(Buffer.alloc(0));
  // Listeners added to a stream that is already gone would wait forever.
  if (req.destroyed) return Promise.reject(aborted());

  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const onData = (chunk: Buffer | string): void => {
      const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      size += buffer.length;
      if (size > maxBytes) {
        cleanup();
        chunks.length = 0;
        req.resume(); // no 'data' listener left: the rest is read and dropped
        reject(tooLarge(`more than ${maxBytes} bytes`));
        return;
      }
      chunks.push(buffer);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0] as Buffer : Buffer.concat(chunks, size));
    };
    // The request stream fails only with its connection (a reset, a cut, the server's requestTimeout).
    const onError = (error: Error): void => {
      cleanup();
      reject(aborted(error));
    };
    const onClose = (): void => {
      cleanup();
      reject(aborted());
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

/** Reads an `application/x-www-form-urlencoded` body (UTF-8) into `URLSearchParams`, with `readBody`'s limit. */
export async function readForm(req: BodySource, options: ReadBodyOptions = {}): Promise<URLSearchParams> {
  const body = await readBody(req, options);
  return new URLSearchParams(body.toString('utf8'));
}

/**
 * The request carries no body: over HTTP/2 its headers ended the stream; over HTTP/1.1 it announced none
 * (no length, or 0, and no transfer encoding).
 */
function hasNoBody(req: BodySource, declared: number | undefined): boolean {
  const stream = (req as { stream?: { endAfterHeaders?: boolean } }).stream;
  if (stream !== undefined) return stream.endAfterHeaders === true;
  return (declared === undefined || declared === 0) && req.headers['transfer-encoding'] === undefined;
}

function declaredLength(header: string | undefined): number | undefined {
  // A malformed length is node:http's business (it answers 400 before we run); only a clean number is trusted.
  return header !== undefined && /^\d{1,15}$/.test(header) ? Number(header) : undefined;
}

function aborted(cause?: Error): SessionError {
  return new SessionError('ERR_SESSION_BODY_ABORTED', undefined, { cause });
}

function tooLarge(detail: string): SessionError {
  return new SessionError('ERR_SESSION_BODY_TOO_LARGE', detail);
}
