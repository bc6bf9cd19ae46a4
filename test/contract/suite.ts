// The HTTP contract, written once and run against every server (node:http, Express, Fastify, Hono).
// Each test states a rule of the engine as seen over HTTP; a rule broken in one adapter fails in that
// adapter's run. Time is a ManualClock; waits are event-loop turns, never sleeps.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request, sessionCookie, sessionIdOf, settle } from '../helpers.js';
import type { StartServer } from './app.js';
import { GUARD, json, post, theCookie, until, UUID, withApp } from './harness.js';
import { lifecycleContract } from './suite-lifecycle.js';

const MINUTE = 60_000;

/** The whole contract for one server. */
export function contractSuite(name: string, start: StartServer): void {
  describe(`${name} adapter: HTTP contract`, () => {
    sessionContract(start);
    lifecycleContract(start);
  });
}

function sessionContract(start: StartServer): void {
  test('a first request gets a new session: 4DSID=<uuid>; Path=/; HttpOnly; SameSite=Strict; Expires = now + inactiveSessionTimeoutMs; no Secure over HTTP', GUARD, async () => {
    await withApp(start, { inactiveSessionTimeoutMs: 30 * MINUTE }, async ({ server, engine, clock }) => {
      const response = await request(server.url);
      const cookie = theCookie(response);
      assert.match(cookie.value, UUID);
      assert.equal(cookie.attrs.get('path'), '/');
      assert.equal(cookie.attrs.get('httponly'), true);
      assert.equal(cookie.attrs.get('samesite'), 'Strict');
      assert.equal(cookie.attrs.get('expires'), new Date(clock.now() + 30 * MINUTE).toUTCString());
      assert.equal(cookie.attrs.has('secure'), false, cookie.raw);
      assert.equal(cookie.attrs.has('max-age'), false, cookie.raw);
      assert.deepEqual(json(response), { n: 1, user: null, x: null, sid: cookie.value, body: '' }, 'the handler ran in the new session (currentSessionId)');
      assert.deepEqual(engine.sessions().map((s) => s.id), [cookie.value]);
    });
  });

  test('a returning browser keeps its session and vars, and each response moves Expires to that request time + inactiveSessionTimeoutMs', GUARD, async () => {
    await withApp(start, { inactiveSessionTimeoutMs: 20 * MINUTE }, async ({ server, engine, clock }) => {
      const id = sessionIdOf(await request(server.url));
      assert.ok(id);
      for (const [i, step] of [7, 13, 19].entries()) {
        clock.advance(step * MINUTE);
        const response = await request(server.url, { cookie: `4DSID=${id}` });
        const cookie = theCookie(response);
        assert.equal(cookie.value, id, 'same session');
        assert.equal(cookie.attrs.get('expires'), new Date(clock.now() + 20 * MINUTE).toUTCString(), 'Expires refreshed');
        assert.deepEqual(json(response), { n: i + 2, user: null, x: null, sid: id, body: '' });
      }
      assert.equal(engine.stats().created, 1);
    });
  });

  test('a malformed, unknown, closed or expired cookie gets a brand-new session, never the client\'s value', GUARD, async () => {
    await withApp(start, { inactiveSessionTimeoutMs: 10 * MINUTE }, async ({ server, engine, clock }) => {
      const closedId = sessionIdOf(await request(server.url));
      assert.ok(closedId);
      assert.equal(await engine.closeSession(closedId), true);
      const expiredId = sessionIdOf(await request(server.url));
      assert.ok(expiredId);
      clock.advance(10 * MINUTE); // the cookie's lifetime has passed; the session itself is still open
      assert.ok(engine.sessions().some((s) => s.id === expiredId));

      const unknown = '0f8fad5b-d9cb-469f-a165-70867728950e';
      const headers = [
        '4DSID=<script>alert(1)</script>', `4DSID=${unknown}0`, `4DSID=${unknown}`, `4DSID=${unknown}; 4DSID=${closedId}`,
        '4DSID=', '4DSID', ';;; ; =', `4DSID=${'a'.repeat(8_000)}`, `4DSID=${closedId}`, `4DSID=${expiredId}`,
      ];
      const seen = new Set<string>();
      for (const header of headers) {
        const response = await request(server.url, { cookie: header });
        const id = theCookie(response).value;
        assert.match(id, UUID, header);
        assert.ok(!header.includes(id), `the client's value was adopted for ${header.slice(0, 60)}`);
        assert.ok(!seen.has(id), 'each gets its own new session');
        seen.add(id);
        assert.equal(json(response).n, 1, `fresh vars for ${header.slice(0, 60)}`);
      }
      assert.equal(engine.stats().created, 2 + headers.length);
    });
  });

  test('at maxSessions a newcomer evicts the least recently active idle session: its onClose sees its vars, its cookie then gets a new session', GUARD, async () => {
    await withApp(start, { maxSessions: 2 }, async ({ server, app, engine, clock }) => {
      const a = sessionIdOf(await request(server.url));
      clock.advance(1_000);
      const b = sessionIdOf(await post(server.url, '/login', 'bob'));
      clock.advance(1_000);
      assert.ok(a && b);
      assert.equal(json(await request(server.url, { cookie: `4DSID=${a}` })).n, 2, 'a is now the most recently active');

      const c = sessionIdOf(await request(server.url));
      assert.ok(c && c !== a && c !== b);
      await until(() => app.hooks.length === 1, 'the evicted session is hooked');
      assert.deepEqual(app.hooks, [{ reason: 'evicted', sessionId: b, vars: { n: 0, user: 'bob' } }]);
      assert.deepEqual(engine.sessions().map((s) => s.id).sort(), [a, c].sort());

      assert.equal(json(await request(server.url, { cookie: `4DSID=${a}` })).n, 3, 'a kept its session');
      const back = await request(server.url, { cookie: `4DSID=${b}` });
      assert.notEqual(sessionIdOf(back), b);
      assert.deepEqual(json(back).user, null, 'b\'s browser starts over');
      assert.equal(engine.stats().closed.evicted, 2, 'b, then the least recently active of a and c');
    });
  });

  test('at maxSessions with every session busy a newcomer gets 503 with Retry-After and no cookie, and no session is created', GUARD, async () => {
    await withApp(start, { maxSessions: 1 }, async ({ server, app, engine }) => {
      const held = request(server.url, { path: '/hold' });
      await app.started.promise;
      const refused = await request(server.url);
      assert.equal(refused.status, 503);
      assert.equal(refused.headers['retry-after'], '1');
      assert.deepEqual(refused.setCookies, []);
      assert.doesNotMatch(refused.body, /[0-9a-f]{8}-[0-9a-f]{4}/, 'no session id in the body');
      assert.equal(engine.stats().created, 1);
      assert.equal(engine.stats().rejected.sessionLimit, 1);
      assert.equal(app.order.filter((o) => o.startsWith('start')).length, 1, 'the refused request ran no handler');

      app.gate.resolve();
      const done = await held;
      assert.equal(json(done).x, 'after');
      assert.match(theCookie(done).value, UUID);
    });
  });

  test('with maxSessions lowered below the busy sessions, a newcomer gets 503 and evicts nothing: the idle session lives on', GUARD, async () => {
    await withApp(start, { maxSessions: 3 }, async ({ server, app, engine }) => {
      const idle = sessionIdOf(await post(server.url, '/login', 'ann'));
      assert.ok(idle);
      const held = request(server.url, { path: '/hold' });
      await app.started.promise;
      engine.setOption('maxSessions', 1);
      // Two sessions, one busy, cap 1: closing the idle one would still leave no room.
      const refused = await request(server.url);
      assert.equal(refused.status, 503);
      assert.deepEqual(refused.setCookies, []);
      await settle();
      assert.deepEqual(app.hooks, [], 'no session was evicted for a newcomer that could not be admitted');
      assert.equal(engine.stats().closed.evicted, 0);
      assert.equal(engine.stats().rejected.sessionLimit, 1);
      const back = json(await request(server.url, { cookie: `4DSID=${idle}` }));
      assert.equal(back.user, 'ann', 'the idle session kept its vars');
      assert.equal(back.sid, idle);

      app.gate.resolve();
      assert.equal((await held).status, 200);
    });
  });

  test('a request from another IP address gets 400 and leaves the session untouched', GUARD, async () => {
    await withApp(start, {}, async ({ server, app, engine }) => {
      const id = sessionIdOf(await request(server.url));
      assert.ok(id);
      const expires = engine.sessionExpiration(id)?.getTime();
      const other = await request(server.url, { cookie: `4DSID=${id}`, localAddress: '127.0.0.2' });
      assert.equal(other.status, 400);
      assert.deepEqual(other.setCookies, [], 'no cookie: neither the session\'s nor a new one');
      assert.equal(app.order.filter((o) => o.startsWith('start')).length, 1, 'no handler ran');
      assert.equal(engine.stats().rejected.ipMismatch, 1);
      assert.equal(engine.sessionExpiration(id)?.getTime(), expires);
      assert.equal(json(await request(server.url, { cookie: `4DSID=${id}` })).n, 2, 'the session goes on from its own address');
      assert.equal(engine.stats().created, 1);
    });
  });

  test('a spoofed X-Forwarded-For changes nothing by default; with trustProxy the client is read from it, in every adapter alike', GUARD, async () => {
    await withApp(start, {}, async ({ server, engine }) => {
      const id = sessionIdOf(await request(server.url, { headers: { 'x-forwarded-for': '203.0.113.7' } }));
      assert.equal(engine.sessions()[0]?.ip, '127.0.0.1', 'the socket address, not the header');
      const spoofed = await request(server.url, { cookie: `4DSID=${id}`, localAddress: '127.0.0.2', headers: { 'x-forwarded-for': '127.0.0.1' } });
      assert.equal(spoofed.status, 400);
    });
    await withApp(start, { trustProxy: 1 }, async ({ server, engine }) => {
      const viaProxy = (forwardedFor: string, cookie?: string) => request(server.url, { headers: { 'x-forwarded-for': forwardedFor }, ...(cookie === undefined ? {} : { cookie }) });
      const id = sessionIdOf(await viaProxy('198.51.100.1, 203.0.113.7'));
      assert.ok(id);
      assert.equal(engine.sessions()[0]?.ip, '203.0.113.7', 'one hop back from the proxy (the socket)');
      assert.equal((await viaProxy('203.0.113.7', `4DSID=${id}`)).status, 200);
      assert.equal((await viaProxy('203.0.113.8', `4DSID=${id}`)).status, 400, 'another client behind the same proxy');
    });
  });

  test("behind a TLS-terminating proxy: with trustProxy, X-Forwarded-Proto https gives the cookie Secure (cookieSecure 'auto'); without trustProxy the header changes nothing", GUARD, async () => {
    const secureOf = (response: { setCookies: string[] }): boolean => /;\s*Secure/i.test(response.setCookies.find((c) => c.startsWith('4DSID=')) ?? '');
    await withApp(start, {}, async ({ server }) => {
      assert.equal(secureOf(await request(server.url, { headers: { 'x-forwarded-proto': 'https' } })), false, 'a client cannot ask for it');
    });
    await withApp(start, { trustProxy: 1 }, async ({ server }) => {
      assert.equal(secureOf(await request(server.url, { headers: { 'x-forwarded-proto': 'https' } })), true);
      assert.equal(secureOf(await request(server.url, { headers: { 'x-forwarded-proto': 'http' } })), false);
      assert.equal(secureOf(await request(server.url, { headers: { 'x-forwarded-proto': 'https, http' } })), false, 'the entry of the trusted hop (the last)');
      assert.equal(secureOf(await request(server.url)), false, 'no header: the socket (plain HTTP)');
    });
  });

  test('a handler that throws or rejects gets a generic 500 without the error text, ERR_SESSION_HANDLER_FAILED on \'error\', and its session keeps working', GUARD, async () => {
    await withApp(start, {}, async ({ server, engine, errors }) => {
      const id = sessionIdOf(await request(server.url));
      assert.ok(id);
      for (const path of ['/throw', '/reject']) {
        const failed = await request(server.url, { path, cookie: `4DSID=${id}` });
        assert.equal(failed.status, 500, path);
        assert.doesNotMatch(failed.body, /secret|hunter2|password|token|at .*\.ts/, `${path}: ${failed.body}`);
        assert.match(failed.body, /Internal Server Error/);
        const cookie = sessionCookie(failed);
        assert.ok(cookie === undefined || cookie === `4DSID=${id}`, 'a failed request never changes the session');
      }
      const after = await request(server.url, { cookie: `4DSID=${id}` });
      assert.equal(sessionIdOf(after), id, 'same session');
      assert.equal(json(after).n, 4, 'vars kept across failures');
      assert.deepEqual(errors.map((e) => [e.code, e.sessionId, (e.cause as Error).message]), [
        ['ERR_SESSION_HANDLER_FAILED', id, 'secret-sync-detail password=hunter2'],
        ['ERR_SESSION_HANDLER_FAILED', id, 'secret-async-detail token=abc'],
      ]);
      assert.equal(engine.stats().handlerErrors, 2);
    });
  });

  test('a handler that lets a SessionError naming a 4xx status escape answers that status (readBody\'s 413), reports nothing, and keeps the session', GUARD, async () => {
    await withApp(start, {}, async ({ server, engine, errors }) => {
      const id = sessionIdOf(await request(server.url));
      const refused = await request(server.url, { path: '/too-large', cookie: `4DSID=${id}` });
      assert.equal(refused.status, 413, refused.body);
      assert.equal(refused.body, 'Payload Too Large: request body too large\n', 'the code\'s fixed message only: a detail may carry the application\'s words');
      assert.deepEqual(errors, [], 'a client sending too much is not a handler failure');
      assert.equal(engine.stats().handlerErrors, 0);
      const after = await request(server.url, { cookie: `4DSID=${id}` });
      assert.equal(sessionIdOf(after), id);
      assert.equal(json(after).n, 3);
    });
  });

  test("the application's own Set-Cookie headers go out next to the session cookie", GUARD, async () => {
    await withApp(start, {}, async ({ server }) => {
      const id = sessionIdOf(await request(server.url));
      const response = await request(server.url, { path: '/cookie', cookie: `4DSID=${id}` });
      assert.equal(response.status, 200);
      assert.ok(response.setCookies.includes('app=1; Path=/') && response.setCookies.includes('theme=dark'), JSON.stringify(response.setCookies));
      assert.equal(theCookie(response).value, id);
    });
  });

  test('after cookieDomain changes at run time the cookie under the earlier domain is cleared next to the new one, with the application\'s own cookies kept', GUARD, async () => {
    await withApp(start, {}, async ({ server, engine }) => {
      const id = sessionIdOf(await request(server.url));
      engine.setOption('cookieDomain', 'example.com');
      for (const path of ['/', '/cookie']) {
        const response = await request(server.url, { path, cookie: `4DSID=${id}` });
        assert.equal(response.status, 200);
        const ours = response.setCookies.filter((c) => c.startsWith('4DSID='));
        assert.deepEqual(ours, [
          '4DSID=; Max-Age=0; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Strict',
          `4DSID=${id}; Domain=example.com; Path=/; Expires=${theCookie({ ...response, setCookies: ours.slice(1) }).attrs.get('expires')}; HttpOnly; SameSite=Strict`,
        ], `${path}: the clearing first, so a cookie jar that takes both for one cookie ends with the one set`);
        if (path === '/cookie') assert.ok(response.setCookies.includes('app=1; Path=/') && response.setCookies.includes('theme=dark'), JSON.stringify(response.setCookies));
      }
    });
  });
}
