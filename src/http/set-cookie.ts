import { SessionError } from '../errors.js';
import type { CookieDirective } from '../lease.js';
import { serializeSessionCookie, type CookieOptions } from './cookie.js';

// Every response sets the session cookie (its Expires moves with each request), so its serialization
// is on the hot path. The cookie package serializes and validates the fixed attributes once per set of
// options; per response only the id and the Expires date are put in. The output is the same, byte for byte.

const MARK_ID = '00000000-0000-4000-8000-000000000000';
const MARK_MS = Date.UTC(2001, 1, 3, 4, 5, 6);
const MARK_DATE = new Date(MARK_MS).toUTCString();
/** Cookie names already warned about (ERR_SESSION_COOKIE_INSECURE, ERR_SESSION_COOKIE_REFUSED), in this process. */
const warnedInsecure = new Set<string>();
const warnedRefused = new Set<string>();

/** The Set-Cookie values of one set of cookie options. */
export class SessionCookieFormat {
  readonly options: CookieOptions;
  /** Per `secure` (0: plain HTTP, 1: HTTPS): the text before the id, between id and date, after the date. */
  readonly #parts: Array<readonly [string, string, string] | null | undefined> = [undefined, undefined];

  constructor(options: CookieOptions) {
    this.options = options;
  }

  format(directive: CookieDirective, secure: boolean): string | undefined {
    if (directive.action !== 'set') return serializeSessionCookie(directive, this.options, secure);
    const parts = this.#partsFor(secure);
    // Ids are v4 UUIDs (newSessionId): nothing in them needs encoding, as the template checked for its marker.
    if (parts === null) return serializeSessionCookie(directive, this.options, secure);
    // Joined, not added up: node:http checks the value with a regular expression, which on a string made
    // with `+` (a rope) first has to flatten it through the runtime; join makes it flat at once.
    return [parts[0], directive.sessionId, parts[1], expiresText(directive.expiresAtMs), parts[2]].join('');
  }

  #partsFor(secure: boolean): readonly [string, string, string] | null {
    const index = secure ? 1 : 0;
    let parts = this.#parts[index];
    if (parts === undefined) {
      // Built once per cookie setting and scheme: the place to say that this cookie cannot work, once per
      // cookie name in this process (engines made again and again with the same setting say it once).
      if (!secure && this.options.cookieSameSite === 'None' && this.options.cookieSecure !== true && !warnedInsecure.has(this.options.cookieName)) {
        warnedInsecure.add(this.options.cookieName);
        process.emitWarning(new SessionError('ERR_SESSION_COOKIE_INSECURE', `cookie ${this.options.cookieName}: serve over HTTPS, or use cookieSameSite "Lax" or "Strict"`));
      }
      const broken = prefixBroken(this.options, secure);
      if (broken !== undefined && !warnedRefused.has(this.options.cookieName)) {
        warnedRefused.add(this.options.cookieName);
        process.emitWarning(new SessionError('ERR_SESSION_COOKIE_REFUSED', `cookie ${this.options.cookieName}: ${broken}`));
      }
      const template = serializeSessionCookie({ action: 'set', sessionId: MARK_ID, expiresAtMs: MARK_MS }, this.options, secure) ?? '';
      const id = template.indexOf(MARK_ID);
      const date = template.indexOf(MARK_DATE);
      // Only when each marker appears once, id before date (a path or domain could, in theory, contain one).
      parts = id >= 0 && date > id && template.lastIndexOf(MARK_ID) === id && template.lastIndexOf(MARK_DATE) === date
        ? [template.slice(0, id), template.slice(id + MARK_ID.length, date), template.slice(date + MARK_DATE.length)]
        : null;
      this.#parts[index] = parts;
    }
    return parts;
  }
}

/**
 * What the cookie's name prefix demands and this cookie would lack (RFC 6265bis: browsers match the
 * prefixes without regard to case), or undefined.
 */
function prefixBroken(options: CookieOptions, secure: boolean): string | undefined {
  const name = options.cookieName.toLowerCase();
  const host = name.startsWith('__host-');
  if (!host && !name.startsWith('__secure-')) return undefined;
  const withSecure = options.cookieSecure === true || (options.cookieSecure === 'auto' && secure);
  if (!withSecure) return 'it goes out without Secure (serve over HTTPS, or set cookieSecure true behind a TLS proxy)';
  if (host && options.cookieDomain !== undefined) return '__Host- cookies may have no Domain (unset cookieDomain)';
  if (host && options.cookiePath !== '/') return '__Host- cookies must have Path=/ (cookiePath "/")';
  return undefined;
}

let lastSecond = Number.NaN;
let lastText = '';

/** `Date#toUTCString()` has whole seconds: requests within one second share one string. */
function expiresText(ms: number): string {
  const second = Math.floor(ms / 1000);
  if (second !== lastSecond) {
    lastText = new Date(ms).toUTCString();
    lastSecond = second;
  }
  return lastText;
}
