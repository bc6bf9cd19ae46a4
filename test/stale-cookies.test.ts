// The session cookie after its name, domain or path changed at run time: responses that set it also clear
// it where a browser may still hold it under an earlier domain or path (src/http/stale-cookies.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../src/index.js';
import { engineWithErrors, request, sessionIdOf, type TestResponse } from './helpers.js';
import { MINUTE, type ParsedCookie, theCookie, withServer } from './http-support.js';

test('after cookieDomain or cookiePath changes at run time, responses that set the cookie also clear it under the earlier domain and path, for one cookie lifetime; never the cookie just set, never another name', async () => {
  const clock = new ManualClock();
  const { engine } = engineWithErrors<{ n: number }>({ clock, inactiveSessionTimeoutMs: 30 * MINUTE, init: () => ({ n: 0 }) });
  await withServer(engine, (_req, res, proc) => res.end(String(++proc.vars.n)), async (server) => {
    const id = theCookie(await request(server.url)).value;
    const clearings = (response: TestResponse): string[] => response.setCookies.filter((c) => c.startsWith('4DSID=;'));
    const current = (response: TestResponse): ParsedCookie => theCookie({ ...response, setCookies: response.setCookies.filter((c) => !c.startsWith('4DSID=;')) });
    assert.deepEqual(clearings(await request(server.url, { cookie: `4DSID=${id}` })), [], 'nothing changed: nothing cleared');

    engine.setOption('cookieDomain', 'example.com');
    const moved = await request(server.url, { cookie: `4DSID=${id}` });
    assert.equal(moved.body, '3');
    assert.equal(current(moved).value, id);
    assert.equal(current(moved).attrs.get('domain'), 'example.com');
    assert.deepEqual(clearings(moved), ['4DSID=; Max-Age=0; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Strict'], 'the host-only cookie is cleared');

    engine.setOption('cookiePath', '/app');
    clock.advance(20 * MINUTE);
    assert.deepEqual(clearings(await request(server.url, { cookie: `4DSID=${id}` })), [
      '4DSID=; Max-Age=0; Domain=example.com; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Strict',
      '4DSID=; Max-Age=0; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Strict',
    ], 'both earlier cookies, the most recent first');

    // Back to the first domain and path (both before the next request: the settings in between were never
    // used): that cookie is the one set now, so it is never cleared.
    engine.setOption('cookieDomain', undefined);
    engine.setOption('cookiePath', '/');
    const back = await request(server.url, { cookie: `4DSID=${id}` });
    assert.equal(current(back).attrs.has('domain'), false);
    assert.equal(current(back).attrs.get('path'), '/');
    assert.deepEqual(clearings(back).map((c) => c.split('; ').filter((p) => /^(Domain|Path)=/.test(p)).join('; ')), ['Domain=example.com; Path=/app', 'Domain=example.com; Path=/']);

    // A cookie lifetime (30 min) after the first response that knew of each change, no browser holds them.
    clock.advance(16 * MINUTE);
    assert.equal(clearings(await request(server.url, { cookie: `4DSID=${id}` })).length, 2, '29 min after the change to /app, 16 after going back');
    clock.advance(15 * MINUTE);
    const later = await request(server.url, { cookie: `4DSID=${id}` });
    assert.equal(later.body, '7');
    assert.deepEqual(clearings(later), []);
    assert.equal(later.setCookies.length, 1);

    // A new name: the old name is never read, so a cookie under it shadows nothing and is left alone.
    engine.setOption('cookieName', 'APPSID');
    const renamed = await request(server.url);
    assert.deepEqual(renamed.setCookies.map((c) => c.split('=')[0]), ['APPSID']);
  });
});

test('a cookie domain changed only in case or by a leading dot is the same cookie for a browser: nothing is cleared', async () => {
  const { engine } = engineWithErrors<{ n: number }>({ clock: new ManualClock(), cookieDomain: '.example.com', init: () => ({ n: 0 }) });
  await withServer(engine, (_req, res, proc) => res.end(String(++proc.vars.n)), async (server) => {
    const id = sessionIdOf(await request(server.url));
    engine.setOption('cookieDomain', 'Example.COM');
    const response = await request(server.url, { cookie: `4DSID=${id}` });
    assert.equal(response.body, '2');
    assert.deepEqual(response.setCookies.map((c) => c.split(';')[0]), [`4DSID=${id}`]);
  });
});

test('cookieDomain changed by a request that also raises the cookie lifetime: the earlier cookie is cleared for the earlier lifetime from that response on, whatever the request\'s own start', async () => {
  const clock = new ManualClock();
  const { engine } = engineWithErrors<{ n: number }>({ clock, inactiveSessionTimeoutMs: 30 * MINUTE, init: () => ({ n: 0 }) });
  await withServer(engine, (req, res, proc) => {
    if (req.url === '/move') {
      clock.advance(2 * MINUTE); // a slow request: the change comes late in it
      engine.setOption('cookieDomain', 'example.com');
      engine.setOption('inactiveSessionTimeoutMs', 24 * 60 * MINUTE);
    }
    res.end(String(++proc.vars.n));
  }, async (server) => {
    const id = sessionIdOf(await request(server.url));
    const cleared = (response: TestResponse): number => response.setCookies.filter((c) => c.startsWith('4DSID=;')).length;
    assert.equal(cleared(await request(server.url, { path: '/move', cookie: `4DSID=${id}` })), 1);
    clock.advance(MINUTE);
    assert.equal(cleared(await request(server.url, { cookie: `4DSID=${id}` })), 1, 'a minute later a browser may still hold it');
    clock.advance(28 * MINUTE);
    assert.equal(cleared(await request(server.url, { cookie: `4DSID=${id}` })), 1, '29 minutes after the change');
    clock.advance(2 * MINUTE);
    assert.equal(cleared(await request(server.url, { cookie: `4DSID=${id}` })), 0, '31 minutes after: no browser holds it');
  });
});

test('back to an earlier cookie domain after the cookie lifetime was lowered: a browser may still hold the cookie set there with the longer lifetime, so it is cleared for that lifetime once the domain changes again', async () => {
  const clock = new ManualClock();
  const { engine } = engineWithErrors<{ n: number }>({ clock, inactiveSessionTimeoutMs: 24 * 60 * MINUTE, init: () => ({ n: 0 }) });
  await withServer(engine, (_req, res, proc) => res.end(String(++proc.vars.n)), async (server) => {
    const id = sessionIdOf(await request(server.url)); // host-only, Expires in 24 h
    const hostOnlyCleared = (response: TestResponse): boolean =>
      response.setCookies.some((c) => c.startsWith('4DSID=;') && !/; Domain=/.test(c));
    engine.setOption('cookieDomain', 'example.com');
    engine.setOption('inactiveSessionTimeoutMs', 30 * MINUTE);
    assert.equal(hostOnlyCleared(await request(server.url, { cookie: `4DSID=${id}` })), true);
    engine.setOption('cookieDomain', undefined); // host-only again, 30 min
    assert.equal((await request(server.url, { cookie: `4DSID=${id}` })).body, '3');
    engine.setOption('cookieDomain', 'other.example');
    assert.equal(hostOnlyCleared(await request(server.url, { cookie: `4DSID=${id}` })), true);
    clock.advance(31 * MINUTE);
    assert.equal(hostOnlyCleared(await request(server.url, { cookie: `4DSID=${id}` })), true, 'the first host-only cookie may live 24 h');
  });
});

test('a cookie under a name no longer used has its clearing window start at the change: should the name come back after a cookie lifetime, it is not cleared', async () => {
  const clock = new ManualClock();
  const { engine } = engineWithErrors<{ n: number }>({ clock, inactiveSessionTimeoutMs: 30 * MINUTE, init: () => ({ n: 0 }) });
  await withServer(engine, (_req, res, proc) => res.end(String(++proc.vars.n)), async (server) => {
    sessionIdOf(await request(server.url)); // 4DSID, Path=/
    engine.setOption('cookieName', 'APPSID');
    const renamed = await request(server.url);
    assert.deepEqual(renamed.setCookies.map((c) => c.split('=')[0]), ['APPSID'], 'another name is never cleared');
    clock.advance(31 * MINUTE);
    engine.setOption('cookieName', '4DSID');
    engine.setOption('cookiePath', '/app');
    const back = await request(server.url);
    assert.deepEqual(back.setCookies.map((c) => c.split('=')[0]), ['4DSID'], 'the 4DSID cookie under Path=/ expired 31 min ago: nothing to clear');
    assert.equal(theCookie(back).attrs.get('path'), '/app');
  });
});

test('back to an earlier cookie domain after its clearing window ran out, then away again: cleared for the lifetime set since, not the expired one', { timeout: 10_000 }, async () => {
  const clock = new ManualClock();
  const { engine } = engineWithErrors<{ n: number }>({ clock, inactiveSessionTimeoutMs: 24 * 60 * MINUTE, init: () => ({ n: 0 }) });
  await withServer(engine, (_req, res, proc) => res.end(String(++proc.vars.n)), async (server) => {
    const hostOnlyCleared = (response: TestResponse): boolean => response.setCookies.some((c) => c.startsWith('4DSID=;') && !/; Domain=/.test(c));
    await request(server.url); // host-only cookie, 24 h
    engine.setOption('cookieDomain', 'example.com');
    engine.setOption('inactiveSessionTimeoutMs', 30 * MINUTE);
    assert.equal(hostOnlyCleared(await request(server.url)), true);
    clock.advance(25 * 60 * MINUTE); // every host-only cookie has expired
    assert.equal(hostOnlyCleared(await request(server.url)), false, 'window over');
    engine.setOption('cookieDomain', undefined); // host-only again, 30 min cookies only from now on
    await request(server.url);
    engine.setOption('cookieDomain', 'other.example');
    assert.equal(hostOnlyCleared(await request(server.url)), true);
    clock.advance(31 * MINUTE);
    assert.equal(hostOnlyCleared(await request(server.url)), false, 'the last host-only cookie (30 min) expired a minute ago');
  });
});

test('back to an earlier cookie domain within its clearing window, then away again: cleared until the last cookie set there expires, whichever stint set it', { timeout: 10_000 }, async () => {
  const clock = new ManualClock();
  const { engine } = engineWithErrors<{ n: number }>({ clock, inactiveSessionTimeoutMs: 24 * 60 * MINUTE, init: () => ({ n: 0 }) });
  await withServer(engine, (_req, res, proc) => res.end(String(++proc.vars.n)), async (server) => {
    const hostOnlyCleared = (response: TestResponse): boolean => response.setCookies.some((c) => c.startsWith('4DSID=;') && !/; Domain=/.test(c));
    await request(server.url); // host-only cookie, 24 h
    engine.setOption('cookieDomain', 'example.com');
    engine.setOption('inactiveSessionTimeoutMs', 30 * MINUTE);
    assert.equal(hostOnlyCleared(await request(server.url)), true); // the 24 h window starts
    clock.advance(60 * MINUTE);
    engine.setOption('cookieDomain', undefined); // host-only again, 30 min
    await request(server.url);
    engine.setOption('cookieDomain', 'other.example');
    assert.equal(hostOnlyCleared(await request(server.url)), true);
    clock.advance(22 * 60 * MINUTE); // 23 h after the first change: the first 24 h cookie may still live
    assert.equal(hostOnlyCleared(await request(server.url)), true);
    clock.advance(61 * MINUTE);
    assert.equal(hostOnlyCleared(await request(server.url)), false, '24 h and a minute after the first change');
  });
});
