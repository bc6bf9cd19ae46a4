import { parseCookie, stringifySetCookie, type SetCookie } from 'cookie';
import type { CookieDirective } from '../lease.js';
import type { RuntimeOptions } from '../options.js';

// Ids are crypto.randomUUID(): anything else cannot name a live session, so it is not even looked up.
const SESSION_ID_LENGTH = 36;
/** A Cookie header longer than this is not parsed (Node already caps all headers at 16 KiB by default). */
const MAX_COOKIE_HEADER_LENGTH = 16_384;
const EPOCH = new Date(0);
const SAME_SITE = { Strict: 'strict', Lax: 'lax', None: 'none' } as const;

export type CookieOptions = Pick<RuntimeOptions, 'cookieName' | 'cookieDomain' | 'cookiePath' | 'cookieSameSite' | 'cookieSecure'>;

/** The session id a Cookie header carries, or undefined when absent or malformed. */
export function readSessionId(cookieHeader: string | undefined, cookieName: string): string | undefined {
  if (cookieHeader === undefined || cookieHeader.length > MAX_COOKIE_HEADER_LENGTH || !cookieHeader.includes(cookieName)) return undefined;
  let value: string | undefined;
  try {
    value = parseCookie(cookieHeader)[cookieName];
  } catch {
    return undefined; // a malformed header is the same as no cookie: the request gets a new session
  }
  return value !== undefined && value.length === SESSION_ID_LENGTH ? value : undefined;
}

/**
 * The Set-Cookie value for a response, or undefined when the response sets none ('none' mode).
 * Open session: id with Expires = last request + inactiveSessionTimeoutMs. Closed session: cleared
 * (`Max-Age=0`, `Expires` in 1970) so the browser forgets the dead id.
 */
export function serializeSessionCookie(directive: CookieDirective, options: CookieOptions, requestIsSecure: boolean): string | undefined {
  if (directive.action === 'none') return undefined;
  const cookie: SetCookie = {
    name: options.cookieName,
    value: directive.action === 'set' ? directive.sessionId : '',
    path: options.cookiePath,
    httpOnly: true,
    sameSite: SAME_SITE[options.cookieSameSite],
    secure: options.cookieSecure === 'auto' ? requestIsSecure : options.cookieSecure,
  };
  if (options.cookieDomain !== undefined) cookie.domain = options.cookieDomain;
  if (directive.action === 'set') {
    cookie.expires = new Date(directive.expiresAtMs);
  } else {
    cookie.maxAge = 0;
    cookie.expires = EPOCH;
  }
  return stringifySetCookie(cookie);
}
