import { stringifySetCookie, type SetCookie } from 'cookie';
import type { CookieDirective } from '../lease.js';
import type { RuntimeOptions } from '../options.js';

// Ids are version-4 UUIDs (newSessionId()): a value of another length cannot name a live session, so it is
// not even looked up. A value of 36 characters can still hold anything once percent-decoded (CR LF,
// markup, NUL): the memory store only looks it up in its Map (a miss, then a new session); a store that
// puts ids into key names checks their full shape first (the Redis store: shapedSessionId), a regular
// expression per request (about 1.3k CPU instructions) the memory store's hot path does without.
const SESSION_ID_LENGTH = 36;
const EPOCH = new Date(0);
const SAME_SITE = { Strict: 'strict', Lax: 'lax', None: 'none' } as const;

export type CookieOptions = Pick<RuntimeOptions, 'cookieName' | 'cookieDomain' | 'cookiePath' | 'cookieSameSite' | 'cookieSecure'>;

/**
 * Whether a browser keeps the two as one cookie: same name, path and domain, the domain compared as
 * browsers store it (lower case, without a leading dot).
 */
export function isSameCookie(a: CookieOptions, b: CookieOptions): boolean {
  return a.cookieName === b.cookieName && a.cookiePath === b.cookiePath && storedDomain(a.cookieDomain) === storedDomain(b.cookieDomain);
}

function storedDomain(domain: string | undefined): string | undefined {
  return domain?.replace(/^\./, '').toLowerCase();
}

/** The session id a Cookie header carries, or undefined when absent or malformed. */
export function readSessionId(cookieHeader: string | undefined, cookieName: string): string | undefined {
  // No length cap: the server already bounds its headers (maxHeaderSize, HTTP/2's maxHeaderListSize), and
  // a cap here would silently give a browser with many cookies a new session on every request.
  if (cookieHeader === undefined || !cookieHeader.includes(cookieName)) return undefined;
  const value = cookieValue(cookieHeader, cookieName);
  return value !== undefined && value.length === SESSION_ID_LENGTH ? value : undefined;
}

/**
 * The value of the first pair named `name`, read exactly as the cookie package's `parseCookie` reads it
 * (pairs split on `;`, a part without `=` skipped, names and values trimmed of spaces and tabs, values
 * percent-decoded when they decode, the first pair of a name wins) without building an object of every
 * pair: this runs on every request.
 */
function cookieValue(header: string, name: string): string | undefined {
  const length = header.length;
  let index = 0;
  while (index < length) {
    const eq = header.indexOf('=', index);
    if (eq === -1) return undefined;
    let end = header.indexOf(';', index);
    if (end === -1) end = length;
    if (eq > end) {
      // No '=' before the next ';': that part is no pair; go on from the last ';' before the '='.
      index = header.lastIndexOf(';', eq - 1) + 1;
      continue;
    }
    let keyStart = index;
    let keyEnd = eq;
    while (keyStart < keyEnd && isBlank(header.charCodeAt(keyStart))) keyStart++;
    while (keyEnd > keyStart && isBlank(header.charCodeAt(keyEnd - 1))) keyEnd--;
    if (keyEnd - keyStart === name.length && header.startsWith(name, keyStart)) {
      let valueStart = eq + 1;
      while (valueStart < end && isBlank(header.charCodeAt(valueStart))) valueStart++;
      while (end > valueStart && isBlank(header.charCodeAt(end - 1))) end--;
      return decode(header.slice(valueStart, end));
    }
    index = end + 1;
  }
  return undefined;
}

function isBlank(code: number): boolean {
  return code === 32 || code === 9;
}

function decode(value: string): string {
  if (!value.includes('%')) return value;
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/**
 * The Set-Cookie value for a response, or undefined when the response sets none ('none' mode).
 * Open session: id with Expires = the directive's (last request + the cookie lifetime). Closed session: cleared
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
