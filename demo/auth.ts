// The admin token: accepted as `Authorization: Bearer <token>` (scripts, Prometheus) or through a sign-in
// form that sets an HttpOnly cookie. The cookie holds an HMAC of the token, not the token itself.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { parseCookie } from 'cookie';

export const ADMIN_COOKIE = 'stockroom_admin';
const COOKIE_MAX_AGE_S = 12 * 3600;

/** 24 random bytes, URL-safe: what `npm start` prints when ADMIN_TOKEN is not set. */
export function generateToken(): string {
  return randomBytes(24).toString('base64url');
}

// Comparing digests gives equal lengths, so timingSafeEqual never throws and the length does not leak.
const digest = (text: string): Buffer => createHash('sha256').update(text).digest();
const same = (a: string, b: string): boolean => timingSafeEqual(digest(a), digest(b));

export class AdminAuth {
  readonly #token: string;
  readonly #cookieValue: string;

  constructor(token: string) {
    if (token.length < 8) throw new TypeError('the admin token must be at least 8 characters');
    this.#token = token;
    this.#cookieValue = createHmac('sha256', token).update('stockroom admin cookie v1').digest('base64url');
  }

  tokenMatches(candidate: string): boolean {
    return same(candidate, this.#token);
  }

  allows(req: IncomingMessage): boolean {
    const authorization = req.headers.authorization;
    if (authorization !== undefined && /^Bearer\s+/i.test(authorization)) return same(authorization.replace(/^Bearer\s+/i, '').trim(), this.#token);
    const cookie = req.headers.cookie === undefined ? undefined : parseCookie(req.headers.cookie)[ADMIN_COOKIE];
    return cookie !== undefined && same(cookie, this.#cookieValue);
  }

  setCookie(): string {
    return `${ADMIN_COOKIE}=${this.#cookieValue}; Path=/; Max-Age=${COOKIE_MAX_AGE_S}; HttpOnly; SameSite=Strict`;
  }

  clearCookie(): string {
    return `${ADMIN_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict`;
  }
}
