// The admin token: accepted as `Authorization: Bearer <token>` (scripts, Prometheus) or through a sign-in
// form that sets an HttpOnly cookie. The cookie holds an HMAC under a key of this process (never the
// token), so it dies with a restart or an admin sign-out. Wrong tokens are throttled per client address.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { parseCookie } from 'cookie';

export const ADMIN_COOKIE = 'stockroom_admin';
const COOKIE_MAX_AGE_S = 12 * 3600;
/** Wrong tokens a client address may try in a window before its next tries are refused (429) until the window ends. */
export const MAX_TOKEN_FAILURES = 5;
export const FAILURE_WINDOW_MS = 60_000;
/** Addresses tracked at most: an attacker with many addresses cannot grow the table without bound. */
const TRACKED_ADDRESSES = 10_000;

/** 24 random bytes, URL-safe: what `npm start` prints when ADMIN_TOKEN is not set. */
export function generateToken(): string {
  return randomBytes(24).toString('base64url');
}

// Comparing digests gives equal lengths, so timingSafeEqual never throws and the length does not leak.
const digest = (text: string): Buffer => createHash('sha256').update(text).digest();
const same = (a: string, b: string): boolean => timingSafeEqual(digest(a), digest(b));

export class AdminAuth {
  readonly #token: string;
  readonly #cookieKey = randomBytes(32);
  /** Moves on each admin sign-out: every admin cookie given before is void. */
  #generation = 0;
  #cookieValue: string;
  readonly #failures = new Map<string, { count: number; sinceMs: number }>();
  readonly #now: () => number;

  constructor(token: string, now: () => number = Date.now) {
    if (token.length < 8) throw new TypeError('the admin token must be at least 8 characters');
    this.#token = token;
    this.#now = now;
    this.#cookieValue = this.#cookieFor(this.#generation);
  }

  /** The sign-in form's check: false for a wrong token, 'throttled' while the address has used up its tries. */
  tokenMatches(candidate: string, address: string): boolean | 'throttled' {
    if (this.#throttled(address)) return 'throttled';
    if (same(candidate, this.#token)) return true;
    this.#failed(address);
    return false;
  }

  allows(req: IncomingMessage): boolean {
    const authorization = req.headers.authorization;
    if (authorization !== undefined && /^Bearer\s+/i.test(authorization)) {
      const address = req.socket.remoteAddress ?? '';
      if (this.#throttled(address)) return false;
      if (same(authorization.replace(/^Bearer\s+/i, '').trim(), this.#token)) return true;
      this.#failed(address);
      return false;
    }
    const cookie = req.headers.cookie === undefined ? undefined : parseCookie(req.headers.cookie)[ADMIN_COOKIE];
    return cookie !== undefined && same(cookie, this.#cookieValue);
  }

  setCookie(): string {
    return `${ADMIN_COOKIE}=${this.#cookieValue}; Path=/; Max-Age=${COOKIE_MAX_AGE_S}; HttpOnly; SameSite=Strict`;
  }

  /** An admin signed out: the cookies given so far stop working, in every browser. */
  signOut(): void {
    this.#cookieValue = this.#cookieFor(++this.#generation);
  }

  #cookieFor(generation: number): string {
    return createHmac('sha256', this.#cookieKey).update(`stockroom admin cookie ${generation}`).digest('base64url');
  }

  #throttled(address: string): boolean {
    const entry = this.#failures.get(address);
    if (entry === undefined) return false;
    if (this.#now() - entry.sinceMs >= FAILURE_WINDOW_MS) {
      this.#failures.delete(address);
      return false;
    }
    return entry.count >= MAX_TOKEN_FAILURES;
  }

  #failed(address: string): void {
    const entry = this.#failures.get(address);
    if (entry !== undefined) {
      entry.count++;
      return;
    }
    if (this.#failures.size >= TRACKED_ADDRESSES) this.#failures.clear();
    this.#failures.set(address, { count: 1, sinceMs: this.#now() });
  }

  clearCookie(): string {
    return `${ADMIN_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict`;
  }
}
