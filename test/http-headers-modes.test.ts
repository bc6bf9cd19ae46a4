// The node:http binding (createServer) through a real server on port 0: the application's own headers next
// to the session cookie, the modes 'none' and 'scalable', and stop() during a request. The session rules
// themselves (limits, IP validation, closes, failures, serialization) are in http.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { OutgoingHttpHeaders } from 'node:http';
import { ManualClock, type CloseReason } from '../src/index.js';
import { deferred, engineWithErrors, request, sessionIdOf, settle } from './helpers.js';
import { UNKNOWN_A, UUID, GUARD, theCookie, path, withServer } from './http-support.js';


// ---- the application's own headers -----------------------------------------------------------------

test("the application's Set-Cookie headers are kept next to the session cookie, and writeHead never mutates the caller's headers object", async () => {
  const { engine } = engineWithErrors({ clock: new ManualClock() });
  const given: OutgoingHttpHeaders[] = [];
  await withServer(engine, (req, res) => {
    switch (path(req)) {
      case '/set-header':
        res.setHeader('Set-Cookie', ['a=1', 'b=2']);
        res.end('ok');
        return;
      case '/write-head': {
        const headers: OutgoingHttpHeaders = { 'Set-Cookie': 'a=1', 'Content-Type': 'text/plain' };
        given.push(headers);
        res.writeHead(200, headers).end('ok');
        return;
      }
      case '/write-head-reason': {
        const headers: OutgoingHttpHeaders = { 'set-cookie': ['a=1', 'b=2'] };
        given.push(headers);
        res.writeHead(200, 'Fine', headers).end('ok');
        return;
      }
      case '/write-head-other': {
        const headers: OutgoingHttpHeaders = { 'x-app': 'yes' };
        given.push(headers);
        res.writeHead(201, headers).end('ok');
        return;
      }
      default:
        res.end('ok');
    }
  }, async (server) => {
    const id = sessionIdOf(await request(server.url));
    assert.ok(id);
    const cookie = `4DSID=${id}`;

    const viaSetHeader = await request(server.url, { path: '/set-header', cookie });
    assert.ok(viaSetHeader.setCookies.includes('a=1') && viaSetHeader.setCookies.includes('b=2'), JSON.stringify(viaSetHeader.setCookies));
    assert.equal(theCookie(viaSetHeader).value, id);

    const viaWriteHead = await request(server.url, { path: '/write-head', cookie });
    assert.ok(viaWriteHead.setCookies.includes('a=1'), JSON.stringify(viaWriteHead.setCookies));
    assert.equal(theCookie(viaWriteHead).value, id);
    assert.equal(viaWriteHead.headers['content-type'], 'text/plain');

    const withReason = await request(server.url, { path: '/write-head-reason', cookie });
    assert.ok(withReason.setCookies.includes('a=1') && withReason.setCookies.includes('b=2'), JSON.stringify(withReason.setCookies));
    assert.equal(theCookie(withReason).value, id);

    const other = await request(server.url, { path: '/write-head-other', cookie });
    assert.equal(other.status, 201);
    assert.equal(other.headers['x-app'], 'yes');
    assert.equal(theCookie(other).value, id);

    assert.deepEqual(given, [
      { 'Set-Cookie': 'a=1', 'Content-Type': 'text/plain' },
      { 'set-cookie': ['a=1', 'b=2'] },
      { 'x-app': 'yes' },
    ], 'headers objects passed to writeHead are not mutated');
  });
});

test('writeHead with a flat header array naming Set-Cookie keeps the session cookie', async () => {
  const { engine } = engineWithErrors({ clock: new ManualClock() });
  await withServer(engine, (_req, res) => {
    res.writeHead(200, ['Set-Cookie', 'a=1', 'Content-Type', 'text/plain']).end('ok');
  }, async (server) => {
    const response = await request(server.url);
    assert.equal(response.status, 200);
    assert.ok(response.setCookies.includes('a=1'), JSON.stringify(response.setCookies));
    const id = sessionIdOf(response);
    assert.match(id ?? '', UUID, `session cookie lost: ${JSON.stringify(response.setCookies)}`);
  });
});

test('writeHead with a flat header array keeps a repeated header (two Link values), as node:http does', async () => {
  const { engine } = engineWithErrors({ clock: new ManualClock() });
  await withServer(engine, (_req, res) => {
    res.writeHead(200, ['Link', '</a.css>; rel=preload', 'Link', '</b.js>; rel=preload']).end('ok');
  }, async (server) => {
    const response = await request(server.url);
    assert.equal(response.status, 200);
    assert.match(sessionIdOf(response) ?? '', UUID);
    // node:http sends both values (joined into one field by the client parser).
    assert.equal(response.headers.link, '</a.css>; rel=preload, </b.js>; rel=preload');
  });
});

test('headers node:http refuses in writeHead (a list of odd length, a Set-Cookie or other value left undefined) make it throw as without sessions: a 500, not a 200 missing them', async () => {
  const refusals: Array<[string, (res: import('node:http').ServerResponse) => void]> = [
    ['odd list', (res) => res.writeHead(200, ['X-A', '1', 'X-B'])],
    ['undefined in a list', (res) => res.writeHead(200, ['X-A', undefined as unknown as string])],
    ['Set-Cookie undefined in an object', (res) => { res.setHeader('Set-Cookie', 'z=9'); res.writeHead(200, { 'Set-Cookie': undefined }); }],
  ];
  for (const [name, write] of refusals) {
    const { engine, errors } = engineWithErrors({ clock: new ManualClock() });
    await withServer(engine, (_req, res) => {
      write(res);
      res.end('ok');
    }, async (server) => {
      const response = await request(server.url);
      assert.equal(response.status, 500, `${name}: ${response.status} ${JSON.stringify(response.headers)}`);
      assert.deepEqual(errors.map((e) => e.code), ['ERR_SESSION_HANDLER_FAILED'], name);
      assert.match(sessionIdOf(response) ?? '', UUID, `${name}: the error answer still carries the session cookie`);
    });
  }
});

const acceptedShapes: Array<[string, (res: import('node:http').ServerResponse) => void]> = [
  // node:http takes a list of [name, value] entries when no header was set before (its _storeHeader):
  // one entry is a list of odd length, not one node:http refuses.
  ['a list of one [name, value] entry', (res) => res.writeHead(200, [['X-App', 'yes']] as unknown as import('node:http').OutgoingHttpHeader[])],
  ['a list of two [name, value] entries', (res) => res.writeHead(200, [['X-App', 'yes'], ['X-Other', '1']] as unknown as import('node:http').OutgoingHttpHeader[])],
  // writeHead(status, reason, headers) with a reason that is not a string: node:http takes the headers.
  ['an undefined reason, then headers', (res) => (res.writeHead as (s: number, r: unknown, h: unknown) => void)(200, undefined, { 'X-App': 'yes' })],
];

// In mode 'legacy' the session cookie is added to the headers; in mode 'none' there is none to add and
// writeHead gets the arguments as given.
for (const mode of ['legacy', 'none'] as const) {
  for (const [name, write] of acceptedShapes) {
    const what = mode === 'legacy' ? '(node:http sends the headers): the answer has them and the session cookie' : "in mode 'none' (no cookie to add): the answer has the headers as node:http sends them";
    test(`writeHead with ${name} ${what}`, async () => {
      const { engine, errors } = engineWithErrors({ clock: new ManualClock(), mode });
      await withServer(engine, (_req, res) => {
        write(res);
        res.end('ok');
      }, async (server) => {
        const response = await request(server.url);
        assert.equal(response.status, 200, `${response.status} ${JSON.stringify(response.headers)}`);
        assert.equal(response.headers['x-app'], 'yes', 'the application\'s header');
        if (mode === 'legacy') assert.match(sessionIdOf(response) ?? '', UUID, 'the session cookie');
        else assert.deepEqual(response.setCookies, []);
        assert.deepEqual(errors.map((e) => e.code), []);
      });
    });
  }
}

// ---- modes ----------------------------------------------------------------------------------------

test("mode 'none' sets no cookie, keeps no session, and runs init on every request", async () => {
  let inits = 0;
  const hooks: string[] = [];
  const { engine } = engineWithErrors<{ n: number }>({
    clock: new ManualClock(), mode: 'none',
    init: () => { inits++; return { n: 0 }; },
    onClose: (proc) => { hooks.push(proc.id); },
  });
  await withServer(engine, (_req, res, proc) => res.end(`${++proc.vars.n}:${engine.currentSessionId()}`), async (server) => {
    const first = await request(server.url);
    assert.equal(first.status, 200);
    assert.deepEqual(first.setCookies, []);
    assert.equal(first.body, '1:');

    const second = await request(server.url, { cookie: `4DSID=${UNKNOWN_A}` });
    assert.equal(second.status, 200);
    assert.deepEqual(second.setCookies, []);
    assert.equal(second.body, '1:', 'a throw-away process every time');

    assert.equal(inits, 2);
    assert.deepEqual(engine.sessions(), []);
    assert.equal(engine.stats().created, 0);
    await engine.stop();
    assert.deepEqual(hooks, []);
  });
});

test("mode 'scalable' keeps sessions by cookie, but closeSession resolves false and onClose never runs", async () => {
  const hooks: CloseReason[] = [];
  const { engine } = engineWithErrors<{ n: number }>({
    clock: new ManualClock(), mode: 'scalable', maxSessions: 1,
    init: () => ({ n: 0 }),
    onClose: (_proc, reason) => { hooks.push(reason); },
  });
  await withServer(engine, (_req, res, proc) => res.end(String(++proc.vars.n)), async (server) => {
    const first = await request(server.url);
    const id = sessionIdOf(first);
    assert.match(id ?? '', UUID);
    assert.ok(id);
    assert.equal((await request(server.url, { cookie: `4DSID=${id}` })).body, '2');

    assert.equal(await engine.closeSession(id), false);
    const still = await request(server.url, { cookie: `4DSID=${id}` });
    assert.equal(sessionIdOf(still), id, 'closeSession did nothing');
    assert.equal(still.body, '3');

    // Eviction (cap of 1) and shutdown close sessions without the hook.
    const newcomer = await request(server.url);
    assert.notEqual(sessionIdOf(newcomer), id);
    await engine.stop();
    assert.equal(engine.stats().closed.evicted, 1);
    assert.equal(engine.stats().closed.shutdown, 1);
    assert.deepEqual(hooks, []);
  });
});

// ---- stop -----------------------------------------------------------------------------------------

test('engine.stop() during a request: the request completes with 200, new requests get 503, every session is hooked once with shutdown', GUARD, async () => {
  const hooks: Array<{ id: string; reason: CloseReason }> = [];
  const { engine } = engineWithErrors({ clock: new ManualClock(), onClose: (proc, reason) => { hooks.push({ id: proc.sessionId, reason }); } });
  const started = deferred();
  const gate = deferred();
  await withServer(engine, async (req, res) => {
    if (path(req) === '/hold') {
      started.resolve();
      await gate.promise;
    }
    res.end('done');
  }, async (server) => {
    const idle = sessionIdOf(await request(server.url));
    assert.ok(idle);
    const held = request(server.url, { path: '/hold' });
    await started.promise;
    const busy = engine.sessions().find((s) => s.id !== idle)?.id;
    assert.ok(busy);

    const stopping = engine.stop();
    await settle();
    assert.equal(hooks.some((h) => h.id === busy), false, 'the busy session is not hooked while its request runs');

    const refused = await request(server.url);
    assert.equal(refused.status, 503);
    assert.ok(refused.headers['retry-after']);
    assert.deepEqual(refused.setCookies, []);
    const refusedWithCookie = await request(server.url, { cookie: `4DSID=${idle}` });
    assert.equal(refusedWithCookie.status, 503);

    gate.resolve();
    const inFlight = await held;
    assert.equal(inFlight.status, 200);
    assert.equal(inFlight.body, 'done');
    await stopping;

    assert.deepEqual(
      hooks.slice().sort((a, b) => a.id.localeCompare(b.id)),
      [{ id: idle, reason: 'shutdown' as const }, { id: busy, reason: 'shutdown' as const }].sort((a, b) => a.id.localeCompare(b.id)),
    );
    assert.equal(engine.stats().closed.shutdown, 2);
    assert.deepEqual(engine.sessions(), []);
  }, [gate]);
});
