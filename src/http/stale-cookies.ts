import type { CookieDirective } from '../lease.js';
import { isSameCookie, type CookieOptions } from './cookie.js';
import { SessionCookieFormat } from './set-cookie.js';

// A browser keys a cookie by name, domain and path. When cookieDomain or cookiePath changes at run time,
// a browser that holds the cookie under the earlier domain or path keeps it until it expires, and sends
// both. Which comes first is the browser's choice (the longer path, then the older cookie), and the
// first pair is the one read (a later one is never preferred: cookie tossing). So after the session that
// cookie names is gone, the stale cookie shadows every new one and the browser got a new session on each
// request. Each response that sets the cookie therefore also clears it under the earlier domains and
// paths, for as long as a browser can still hold one there.

/** At most this many earlier domain/path pairs are cleared (each adds one Set-Cookie to a response). */
const MAX_STALE_COOKIES = 4;
const CLEAR: CookieDirective = Object.freeze({ action: 'clear' });

/** The session cookie as this process last set it under a domain and path no longer in use. */
export class StaleCookie {
  readonly #format: SessionCookieFormat;
  /** The longest cookie lifetime it was set with: how long after the change a browser may still hold it. */
  readonly #lifetimeMs: number;
  /** When a cookie set under it before an earlier change expires at the latest, if that may be later. */
  readonly #goneNotBeforeMs: number | undefined;
  /** When the last cookie set under it expires at the latest; known at the first response after the change. */
  #goneAtMs: number | undefined;

  constructor(options: CookieOptions, lifetimeMs: number, goneNotBeforeMs: number | undefined) {
    this.#format = new SessionCookieFormat(options);
    this.#lifetimeMs = lifetimeMs;
    this.#goneNotBeforeMs = goneNotBeforeMs;
  }

  /**
   * What a return to this cookie carries on: the longest lifetime of the cookies set under it, if no
   * response came since it was left (so none was cleared); else when the last of them expires.
   */
  get carried(): { readonly lifetimeMs: number; readonly goneNotBeforeMs: number | undefined } {
    return this.#goneAtMs === undefined
      ? { lifetimeMs: this.#lifetimeMs, goneNotBeforeMs: this.#goneNotBeforeMs }
      : { lifetimeMs: 0, goneNotBeforeMs: this.#goneAtMs };
  }

  get options(): CookieOptions {
    return this.#format.options;
  }

  /** Whether a browser may still hold the cookie at `nowMs`. */
  heldAt(nowMs: number): boolean {
    // The change took effect before the first response that reads these settings: a cookie set under
    // them expired by now + their lifetime at the latest.
    this.#goneAtMs ??= Math.max(nowMs + this.#lifetimeMs, this.#goneNotBeforeMs ?? 0);
    return nowMs < this.#goneAtMs;
  }

  /** The Set-Cookie that clears it (a clear directive always formats to one). */
  clearing(secure: boolean): string | undefined {
    return this.#format.format(CLEAR, secure);
  }
}

/**
 * The stale cookies once the options changed from `previous` (set with cookie lifetime
 * `previousLifetimeMs`, some maybe living until `previousGoneNotBeforeMs`) to `next`: the earlier ones plus `previous` itself when it is another cookie,
 * without the one `next` sets again, the most recent first.
 */
export function staleCookiesAfter(
  earlier: readonly StaleCookie[], previous: CookieOptions, previousLifetimeMs: number, previousGoneNotBeforeMs: number | undefined, next: CookieOptions,
): readonly StaleCookie[] {
  const candidates = isSameCookie(previous, next) ? earlier : [new StaleCookie(previous, previousLifetimeMs, previousGoneNotBeforeMs), ...earlier];
  const kept: StaleCookie[] = [];
  for (const stale of candidates) {
    if (kept.length === MAX_STALE_COOKIES) break;
    if (isSameCookie(stale.options, next) || kept.some((k) => isSameCookie(k.options, stale.options))) continue;
    kept.push(stale);
  }
  return kept;
}

/**
 * `cookie` after the clearings of the stale cookies that share its name (a cookie under another name is
 * never read, so it shadows nothing) and that a browser may still hold at `nowMs`. The clearings go
 * first: Set-Cookie lines are applied in order, so whatever a browser takes for the same cookie as the
 * one set (a domain differing only in case or a leading dot; a host-only cookie and Domain=<host>, one
 * cookie for RFC 6265 cookie jars though not for browsers) is set again after its clearing, never lost.
 */
export function withStaleClearings(cookie: string, stale: readonly StaleCookie[], cookieName: string, nowMs: number, secure: boolean): string | string[] {
  let cookies: string[] | undefined;
  for (const old of stale) {
    // Every window starts at the first response after the change, under another name too: the cookie
    // is clearable, should the name come back, only for as long as a browser can still hold it.
    if (!old.heldAt(nowMs) || old.options.cookieName !== cookieName) continue;
    const clearing = old.clearing(secure);
    if (clearing !== undefined) (cookies ??= []).push(clearing);
  }
  if (cookies === undefined) return cookie;
  cookies.push(cookie);
  return cookies;
}
