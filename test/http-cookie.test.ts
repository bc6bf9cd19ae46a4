// The session cookie over node:http: its attributes, the options that shape it (also changed at run
// time), its lifetime, and what an unknown, malformed, expired or closed id gets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../src/index.js';
import { engineWithErrors, request, sessionIdOf } from './helpers.js';
import { UNKNOWN_A, UUID, MINUTE, theCookie, withServer } from './http-support.js';

test('the first response sets 4DSID=<uuid> with Path=/, HttpOnly, SameSite=Strict, Expires = request time + inactiveSessionTimeoutMs, and no Secure over HTTP', async () => {
  const clock = new ManualClock();
  const { engine } = engineWithErrors({ clock, inactiveSessionTimeoutMs: 30 * MINUTE });
  await withServer(engine, (_req, res) => res.end('ok'), async (server) => {
    const startedAt = clock.now();
    const response = await request(server.url);
    assert.equal(response.status, 200);
    const cookie = theCookie(response);
    assert.equal(cookie.name, '4DSID');
    assert.match(cookie.value, UUID);
    assert.equal(cookie.attrs.get('path'), '/');
    assert.equal(cookie.attrs.get('httponly'), true);
    assert.equal(cookie.attrs.get('samesite'), 'Strict');
    assert.equal(cookie.attrs.get('expires'), new Date(startedAt + 30 * MINUTE).toUTCString());
    assert.equal(cookie.attrs.has('secure'), false, `no Secure over plain HTTP: ${cookie.raw}`);
    assert.equal(cookie.attrs.has('domain'), false, 'host-only cookie by default');
    assert.deepEqual(engine.sessions().map((s) => s.id), [cookie.value]);
  });
});

test('cookieSecure: true marks the cookie Secure even over plain HTTP', async () => {
  const { engine } = engineWithErrors({ clock: new ManualClock(), cookieSecure: true });
  await withServer(engine, (_req, res) => res.end('ok'), async (server) => {
    const cookie = theCookie(await request(server.url));
    assert.equal(cookie.attrs.get('secure'), true, cookie.raw);
  });
});

test('cookieName, cookiePath, cookieDomain and cookieSameSite shape the cookie, and only that name is read back', async () => {
  const { engine } = engineWithErrors<{ n: number }>({
    clock: new ManualClock(), init: () => ({ n: 0 }),
    cookieName: 'APPSID', cookiePath: '/app', cookieDomain: 'example.com', cookieSameSite: 'Lax',
  });
  await withServer(engine, (_req, res, proc) => res.end(String(++proc.vars.n)), async (server) => {
    const first = await request(server.url);
    assert.equal(first.setCookies.some((c) => c.startsWith('4DSID=')), false, 'no cookie under the default name');
    const cookie = theCookie(first, 'APPSID');
    assert.match(cookie.value, UUID);
    assert.equal(cookie.attrs.get('path'), '/app');
    assert.equal(cookie.attrs.get('domain'), 'example.com');
    assert.equal(cookie.attrs.get('samesite'), 'Lax');
    assert.equal(cookie.attrs.get('httponly'), true);

    const back = await request(server.url, { cookie: `APPSID=${cookie.value}` });
    assert.equal(sessionIdOf(back, 'APPSID'), cookie.value);
    assert.equal(back.body, '2');

    const wrongName = await request(server.url, { cookie: `4DSID=${cookie.value}` });
    assert.notEqual(sessionIdOf(wrongName, 'APPSID'), cookie.value, 'the id under another cookie name is not read');
    assert.equal(wrongName.body, '1');
  });
});

test('cookie options changed at run time apply from the next request: the new name is read and written, the old one is not read', async () => {
  const { engine } = engineWithErrors<{ n: number }>({ clock: new ManualClock(), init: () => ({ n: 0 }) });
  await withServer(engine, (_req, res, proc) => res.end(String(++proc.vars.n)), async (server) => {
    const id = theCookie(await request(server.url)).value;
    assert.equal((await request(server.url, { cookie: `4DSID=${id}` })).body, '2');
    engine.setOption('cookieName', 'APPSID');
    engine.setOption('cookiePath', '/app');
    const renamed = await request(server.url, { cookie: `APPSID=${id}` });
    assert.equal(renamed.body, '3', 'the same session under the new name');
    const cookie = theCookie(renamed, 'APPSID');
    assert.equal(cookie.value, id);
    assert.equal(cookie.attrs.get('path'), '/app');
    assert.equal(renamed.setCookies.some((c) => c.startsWith('4DSID=')), false);
    assert.equal((await request(server.url, { cookie: `4DSID=${id}` })).body, '1', 'the old name is no longer read');
  });
});

test('a returning browser keeps its session and vars, and every response moves Expires to that request time + inactiveSessionTimeoutMs', async () => {
  const clock = new ManualClock();
  const timeout = 20 * MINUTE;
  const { engine } = engineWithErrors<{ n: number }>({ clock, inactiveSessionTimeoutMs: timeout, init: () => ({ n: 0 }) });
  await withServer(engine, (_req, res, proc) => res.end(String(++proc.vars.n)), async (server) => {
    const first = await request(server.url);
    const id = sessionIdOf(first);
    assert.ok(id);
    assert.equal(theCookie(first).attrs.get('expires'), new Date(clock.now() + timeout).toUTCString());

    for (const step of [7 * MINUTE, 13 * MINUTE, 19 * MINUTE]) {
      clock.advance(step);
      const response = await request(server.url, { cookie: `4DSID=${id}` });
      const cookie = theCookie(response);
      assert.equal(cookie.value, id, 'same session');
      assert.equal(cookie.attrs.get('expires'), new Date(clock.now() + timeout).toUTCString(), 'Expires refreshed');
      assert.equal(engine.sessionExpiration(id)?.getTime(), clock.now() + timeout);
    }
    assert.equal((await request(server.url, { cookie: `4DSID=${id}` })).body, '5');
    assert.equal(engine.stats().created, 1);
  });
});

test('a cookie whose lifetime has passed is treated as unknown: the request gets a new session', async () => {
  const clock = new ManualClock();
  const { engine } = engineWithErrors<{ n: number }>({ clock, inactiveSessionTimeoutMs: 10 * MINUTE, init: () => ({ n: 0 }) });
  await withServer(engine, (_req, res, proc) => res.end(String(++proc.vars.n)), async (server) => {
    const id = sessionIdOf(await request(server.url));
    assert.ok(id);
    clock.advance(10 * MINUTE);
    const late = await request(server.url, { cookie: `4DSID=${id}` });
    assert.equal(late.status, 200);
    assert.match(sessionIdOf(late) ?? '', UUID);
    assert.notEqual(sessionIdOf(late), id);
    assert.equal(late.body, '1', 'fresh vars');
  });
});

// ---- malformed, unknown and dead cookies --------------------------------------------------------

const UNKNOWN_B = '7c9e6679-7425-40de-944b-e07fc1f90ae7';
const MALFORMED: ReadonlyArray<readonly [string, string]> = [
  ['garbage value', '4DSID=<script>alert(1)</script>'],
  ['wrong length (one char too many)', `4DSID=${UNKNOWN_A}0`],
  ['wrong length (truncated)', `4DSID=${UNKNOWN_A.slice(0, 35)}`],
  ['4DSID twice', `4DSID=${UNKNOWN_A}; 4DSID=${UNKNOWN_B}`],
  ['4DSID twice, garbage and empty', '4DSID=zzz; other=1; 4DSID='],
  ['huge header near the 16 KiB limit', `4DSID=${'a'.repeat(15_000)}`],
  ['huge header of many pairs', `${Array.from({ length: 1_500 }, (_, i) => `c${i}=v`).join('; ')}; 4DSID=${UNKNOWN_A}`],
  ['non-ASCII value of id length', `4DSID=${'\u00e9'.repeat(36)}`],
  ['non-ASCII bytes around the name', `\u00ff4DSID\u00fe=${UNKNOWN_A}`],
  ['percent-encoded junk', '4DSID=%E0%A4%A%ZZ%00%0d%0aSet-Cookie:%20x=1'],
  ['percent-encoded id-length junk', `4DSID=${'%41'.repeat(12)}`],
  ['empty value', '4DSID='],
  ['no = at all', '4DSID'],
  ['only separators', ';;; ; ='],
  ['a well-formed but unknown uuid', `4DSID=${UNKNOWN_A}`],
];

for (const [name, header] of MALFORMED) {
  test(`a cookie header with ${name} gets 200 and a brand-new session, never the client's id`, async () => {
    const { engine, errors } = engineWithErrors<{ fresh: boolean }>({ clock: new ManualClock(), init: () => ({ fresh: true }) });
    await withServer(engine, (_req, res, proc) => {
      const wasFresh = proc.vars.fresh;
      proc.vars.fresh = false;
      res.end(String(wasFresh));
    }, async (server) => {
      const response = await request(server.url, { cookie: header });
      assert.equal(response.status, 200, response.body);
      assert.equal(response.body, 'true', 'a fresh context (init ran)');
      const id = sessionIdOf(response);
      assert.match(id ?? '', UUID);
      assert.ok(id !== undefined && !header.includes(id), `the client's value was adopted: ${id}`);
      assert.notEqual(id, UNKNOWN_A);
      assert.notEqual(id, UNKNOWN_B);
      assert.deepEqual(engine.sessions().map((s) => s.id), [id]);
      assert.equal(engine.stats().created, 1);
      assert.deepEqual(errors, []);
    });
  });
}

test('a cookie naming a session closed with engine.closeSession gets a new id and a fresh context', async () => {
  const hooks: string[] = [];
  const { engine } = engineWithErrors<{ n: number }>({ clock: new ManualClock(), init: () => ({ n: 0 }), onClose: (proc) => { hooks.push(proc.sessionId); } });
  await withServer(engine, (_req, res, proc) => res.end(String(++proc.vars.n)), async (server) => {
    const id = sessionIdOf(await request(server.url));
    assert.ok(id);
    assert.equal((await request(server.url, { cookie: `4DSID=${id}` })).body, '2');
    assert.equal(await engine.closeSession(id), true);
    assert.deepEqual(hooks, [id]);

    const after = await request(server.url, { cookie: `4DSID=${id}` });
    assert.equal(after.status, 200);
    assert.match(sessionIdOf(after) ?? '', UUID);
    assert.notEqual(sessionIdOf(after), id, 'a closed id is never reused');
    assert.equal(after.body, '1');
    assert.deepEqual(hooks, [id], 'the dead session is not closed twice');
  });
});

// ---- limits ---------------------------------------------------------------------------------------
