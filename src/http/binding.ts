import type { SessionEngine } from '../engine.js';
import { RETRY_AFTER_SECONDS, SessionError } from '../errors.js';
import type { RequestLease } from '../lease.js';
import type { SessionVars } from '../process.js';
import { readSessionId, serializeSessionCookie } from './cookie.js';

/** The parts of a request the binding reads; every framework can supply them. */
export interface HttpRequestFacts {
  readonly cookieHeader: string | undefined;
  readonly remoteAddress: string | undefined;
  readonly secure: boolean;
}

/** A complete error answer, framework-free. The body never contains an error's own text. */
export interface HttpErrorAnswer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

const STATUS_TEXT: Readonly<Record<number, string>> = { 400: 'Bad Request', 413: 'Payload Too Large', 500: 'Internal Server Error', 503: 'Service Unavailable' };

/** `::ffff:127.0.0.1` and `127.0.0.1` are one client: compare IPv4 clients in one form. */
export function normalizeIp(address: string | undefined): string {
  if (address === undefined) return '';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

/** Binds a request to a process of `engine`: reads the cookie and IP, acquires the process. */
export function acquireFor<Vars extends SessionVars>(engine: SessionEngine<Vars>, facts: HttpRequestFacts): Promise<RequestLease<Vars>> {
  return engine.acquire({ sessionId: readSessionId(facts.cookieHeader, engine.getOption('cookieName')), ip: normalizeIp(facts.remoteAddress) });
}

/** The Set-Cookie header value for the lease's response, decided now (call it when headers are written). */
export function setCookieFor<Vars extends SessionVars>(engine: SessionEngine<Vars>, lease: RequestLease<Vars>, secure: boolean): string | undefined {
  const directive = lease.cookie();
  if (directive.action === 'none') return undefined;
  return serializeSessionCookie(directive, {
    cookieName: engine.getOption('cookieName'),
    cookieDomain: engine.getOption('cookieDomain'),
    cookiePath: engine.getOption('cookiePath'),
    cookieSameSite: engine.getOption('cookieSameSite'),
    cookieSecure: engine.getOption('cookieSecure'),
  }, secure);
}

/** The answer to a failed acquire or a failed handler: the SessionError's status, else a generic 500. */
export function errorAnswer(error: unknown): HttpErrorAnswer {
  const status = error instanceof SessionError ? error.httpStatus : 500;
  const text = STATUS_TEXT[status] ?? 'Error';
  const headers: Record<string, string> = { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' };
  if (status === 503) headers['retry-after'] = String(RETRY_AFTER_SECONDS);
  // Session errors have fixed, safe messages; anything else might carry secrets, so only the status text goes out.
  const body = error instanceof SessionError && status !== 500 ? `${text}: ${error.message}\n` : `${text}\n`;
  return { status, headers, body };
}
