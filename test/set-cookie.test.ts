import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { serializeSessionCookie, type CookieOptions } from '../src/http/cookie.js';
import { SessionCookieFormat } from '../src/http/set-cookie.js';

// The fast Set-Cookie writer must say exactly what the cookie package says, for every option set.
test('the Set-Cookie fast path writes byte for byte what serializeSessionCookie writes, for every option combination', () => {
  const names = ['4DSID', 'APP_SID'];
  const domains = [undefined, 'example.com'];
  const paths = ['/', '/app'];
  const sameSites = ['Strict', 'Lax', 'None'] as const;
  const secures = ['auto', true, false] as const;
  let checked = 0;
  for (const cookieName of names) for (const cookieDomain of domains) for (const cookiePath of paths) for (const cookieSameSite of sameSites) for (const cookieSecure of secures) {
    const options: CookieOptions = { cookieName, cookieDomain, cookiePath, cookieSameSite, cookieSecure };
    const format = new SessionCookieFormat(options);
    for (const secure of [false, true]) {
      // Several ids and times, including two in one second and one a second later (the date cache).
      for (const expiresAtMs of [Date.UTC(2026, 0, 1, 8), Date.UTC(2026, 0, 1, 8) + 999, Date.UTC(2026, 0, 1, 8, 0, 1), Date.UTC(2030, 5, 15, 23, 59, 59, 500)]) {
        const directive = { action: 'set' as const, sessionId: randomUUID(), expiresAtMs };
        assert.equal(format.format(directive, secure), serializeSessionCookie(directive, options, secure));
        checked++;
      }
      assert.equal(format.format({ action: 'clear' }, secure), serializeSessionCookie({ action: 'clear' }, options, secure));
      assert.equal(format.format({ action: 'none' }, secure), undefined);
    }
  }
  assert.equal(checked, 2 * 2 * 2 * 3 * 3 * 2 * 4);
});

test('a SameSite=None cookie about to go out over plain HTTP without Secure warns once per cookie name (ERR_SESSION_COOKIE_INSECURE); over HTTPS, with cookieSecure true, or with Lax it does not', async () => {
  const warnings: Error[] = [];
  const onWarning = (warning: Error): void => { if ((warning as { code?: string }).code === 'ERR_SESSION_COOKIE_INSECURE' && warning.message.includes('WARNED_SID')) warnings.push(warning); };
  process.on('warning', onWarning);
  try {
    const base = { cookieName: 'WARNED_SID', cookieDomain: undefined, cookiePath: '/' } as const;
    const directive = { action: 'set' as const, sessionId: randomUUID(), expiresAtMs: Date.UTC(2026, 0, 1) };
    const insecure = new SessionCookieFormat({ ...base, cookieSameSite: 'None', cookieSecure: 'auto' });
    for (let i = 0; i < 3; i++) assert.doesNotMatch(insecure.format(directive, false) ?? '', /Secure/);
    assert.match(insecure.format(directive, true) ?? '', /; Secure/);
    new SessionCookieFormat({ ...base, cookieSameSite: 'None', cookieSecure: true }).format(directive, false);
    new SessionCookieFormat({ ...base, cookieSameSite: 'Lax', cookieSecure: 'auto' }).format(directive, false);
    await new Promise((resolve) => setImmediate(resolve)); // warnings are emitted on the next tick
    assert.equal(warnings.length, 1, 'one warning for the insecure setting, none for the others');
    // Once per cookie name in a process: an engine made again with the same setting says nothing more.
    new SessionCookieFormat({ ...base, cookieSameSite: 'None', cookieSecure: 'auto' }).format(directive, false);
    new SessionCookieFormat({ ...base, cookieName: 'OTHER_WARNED_SID', cookieSameSite: 'None', cookieSecure: 'auto' }).format(directive, false);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(warnings.map((w) => /cookie (\S+):/.exec(w.message)?.[1]), ['WARNED_SID', 'OTHER_WARNED_SID']);
  } finally {
    process.off('warning', onWarning);
  }
});

test('a cookie name with the __Host- or __Secure- prefix whose cookie lacks what the prefix demands warns once per name (ERR_SESSION_COOKIE_REFUSED); one that has it does not', async () => {
  const warnings: string[] = [];
  const onWarning = (warning: Error): void => { if ((warning as { code?: string }).code === 'ERR_SESSION_COOKIE_REFUSED') warnings.push(warning.message); };
  process.on('warning', onWarning);
  try {
    const directive = { action: 'set' as const, sessionId: randomUUID(), expiresAtMs: Date.UTC(2026, 0, 1) };
    const format = (cookieName: string, over: 'http' | 'https', extra: { cookieDomain?: string; cookiePath?: string; cookieSecure?: true | 'auto' } = {}): void => {
      new SessionCookieFormat({ cookieName, cookieDomain: extra.cookieDomain, cookiePath: extra.cookiePath ?? '/', cookieSameSite: 'Strict', cookieSecure: extra.cookieSecure ?? 'auto' }).format(directive, over === 'https');
    };
    format('__Host-ok', 'https');
    format('__Secure-ok', 'https', { cookiePath: '/app', cookieDomain: 'example.com' });
    format('__host-plainhttp', 'http');
    format('__Host-proxied', 'http', { cookieSecure: true });
    format('__Host-domain', 'https', { cookieDomain: 'example.com' });
    format('__Host-path', 'https', { cookiePath: '/app' });
    format('__Secure-plainhttp', 'http');
    format('__Secure-plainhttp', 'http');
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(warnings.map((w) => /cookie (\S+):/.exec(w)?.[1]), ['__host-plainhttp', '__Host-domain', '__Host-path', '__Secure-plainhttp']);
  } finally {
    process.off('warning', onWarning);
  }
});
