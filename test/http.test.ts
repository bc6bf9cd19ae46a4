// The node:http binding (createServer) through a real server on port 0: the session rules over HTTP
// (limits, IP validation, closes from outside and inside, handler failures, serialization). Headers,
// modes and stop() are in http-headers-modes.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type CloseReason } from '../src/index.js';
import { deferred, engineWithErrors, request, sessionCookie, sessionIdOf, settle } from './helpers.js';
import { UUID, MINUTE, GUARD, assertClearingCookie, until, path, withServer } from './http-support.js';

test('at maxSessions with every session busy a new browser gets 503 with Retry-After, no cookie, and no session is created', GUARD, async () => {
  const closes: CloseReason[] = [];
  const { engine } = engineWithErrors({ clock: new ManualClock(), maxSessions: 1, onClose: (_proc, reason) => { closes.push(reason); } });
  const started = deferred();
  const gate = deferred();
  await withServer(engine, async (req, res) => {
    if (path(req) === '/hold') {
      started.resolve();
      await gate.promise;
    }
    res.end('ok');
  }, async (server) => {
    const held = request(server.url, { path: '/hold' });
    await started.promise;

    const refused = await request(server.url);
    assert.equal(refused.status, 503);
    assert.equal(refused.headers['retry-after'], '1');
    assert.deepEqual(refused.setCookies, [], 'no Set-Cookie on a 503');
    assert.equal(engine.sessions().length, 1);
    assert.equal(engine.stats().created, 1, 'nothing created');
    assert.equal(engine.stats().rejected.sessionLimit, 1);
    assert.deepEqual(closes, [], 'the busy session was not evicted');

    gate.resolve();
    const first = await held;
    assert.equal(first.status, 200);
    const firstId = sessionIdOf(first);
    assert.match(firstId ?? '', UUID);

    // Once idle, the session is evictable: the next newcomer gets in.
    const next = await request(server.url);
    assert.equal(next.status, 200);
    assert.notEqual(sessionIdOf(next), firstId);
    await settle();
    assert.deepEqual(closes, ['evicted']);
  }, [gate]);
});

// ---- IP validation --------------------------------------------------------------------------------

test('a session cookie sent from another IP gets 400 and leaves the session untouched', async () => {
  const clock = new ManualClock();
  const { engine } = engineWithErrors<{ n: number }>({ clock, init: () => ({ n: 0 }) });
  await withServer(engine, (_req, res, proc) => res.end(String(++proc.vars.n)), async (server) => {
    const first = await request(server.url, { localAddress: '127.0.0.1' });
    const id = sessionIdOf(first);
    assert.ok(id);
    const [before] = engine.sessions();
    assert.ok(before);

    clock.advance(5 * MINUTE);
    const stolen = await request(server.url, { cookie: `4DSID=${id}`, localAddress: '127.0.0.2' });
    assert.equal(stolen.status, 400);
    assert.deepEqual(stolen.setCookies, [], 'no cookie on a 400');
    assert.equal(engine.stats().rejected.ipMismatch, 1);

    const [after] = engine.sessions();
    assert.ok(after);
    assert.equal(after.id, id);
    assert.equal(after.lastActivityAt.getTime(), before.lastActivityAt.getTime(), 'lastActivity not updated');
    assert.equal(after.expiresAt.getTime(), before.expiresAt.getTime(), 'cookie lifetime not restarted');
    assert.equal(engine.sessions().length, 1, 'no session created for the other IP');

    const owner = await request(server.url, { cookie: `4DSID=${id}`, localAddress: '127.0.0.1' });
    assert.equal(owner.status, 200);
    assert.equal(sessionIdOf(owner), id);
    assert.equal(owner.body, '2', 'the handler never ran for the rejected request');
  });
});

test('with ipValidation: false the session is accepted from a second address', async () => {
  const { engine } = engineWithErrors<{ n: number }>({ clock: new ManualClock(), ipValidation: false, init: () => ({ n: 0 }) });
  await withServer(engine, (_req, res, proc) => res.end(String(++proc.vars.n)), async (server) => {
    const id = sessionIdOf(await request(server.url, { localAddress: '127.0.0.1' }));
    assert.ok(id);
    const other = await request(server.url, { cookie: `4DSID=${id}`, localAddress: '127.0.0.2' });
    assert.equal(other.status, 200);
    assert.equal(sessionIdOf(other), id);
    assert.equal(other.body, '2');
  });
});

// ---- closing --------------------------------------------------------------------------------------

test('closeSession from outside during a request: the response clears the cookie, then the hook runs once, and the old id never resurrects', GUARD, async () => {
  interface Vars { n: number; x?: string }
  const hooks: Array<{ reason: CloseReason; x: string | undefined; n: number }> = [];
  const { engine } = engineWithErrors<Vars>({
    clock: new ManualClock(), init: () => ({ n: 0 }),
    onClose: (proc, reason) => { hooks.push({ reason, x: proc.vars.x, n: proc.vars.n }); },
  });
  const started = deferred();
  const gate = deferred();
  let hooksSeenByHandler = -1;
  await withServer(engine, async (req, res, proc) => {
    proc.vars.n++;
    if (path(req) === '/hold') {
      proc.vars.x = 'before';
      started.resolve();
      await gate.promise;
      proc.vars.x = 'after'; // written after the close began: the hook sees it, the next session never does
      hooksSeenByHandler = hooks.length;
    }
    res.end(JSON.stringify(proc.vars));
  }, async (server) => {
    const id = sessionIdOf(await request(server.url));
    assert.ok(id);
    const responseA = request(server.url, { path: '/hold', cookie: `4DSID=${id}` });
    await started.promise;

    const closing = engine.closeSession(id);
    await settle();
    assert.equal(hooks.length, 0, 'onClose must wait for the request in flight');
    assert.equal(engine.sessions().some((s) => s.id === id), false, 'the id is dead at once');

    // A request arriving while the close waits already gets a new session.
    const during = await request(server.url, { cookie: `4DSID=${id}` });
    assert.equal(during.status, 200);
    assert.notEqual(sessionIdOf(during), id);
    assert.equal(JSON.parse(during.body).n, 1);

    gate.resolve();
    const a = await responseA;
    assert.equal(a.status, 200);
    assertClearingCookie(a);
    assert.equal(hooksSeenByHandler, 0);

    assert.equal(await closing, true);
    assert.deepEqual(hooks, [{ reason: 'closed', x: 'after', n: 2 }], 'hook ran once with the context the request left');

    const later = await request(server.url, { cookie: `4DSID=${id}` });
    assert.equal(later.status, 200);
    const laterId = sessionIdOf(later);
    assert.match(laterId ?? '', UUID);
    assert.notEqual(laterId, id);
    assert.deepEqual(JSON.parse(later.body), { n: 1 }, 'fresh vars: nothing written by A after the close');
    assert.equal(hooks.length, 1);
  }, [gate]);
});

test('logout from inside: the hook sees the vars intact, the handler goes on with a reset context, the response clears the cookie', GUARD, async () => {
  interface Vars { user?: string }
  const hooks: Array<{ reason: CloseReason; user: string | undefined; current: string }> = [];
  const { engine } = engineWithErrors<Vars>({
    clock: new ManualClock(), init: () => ({}),
    onClose: (proc, reason) => { hooks.push({ reason, user: proc.vars.user, current: engine.currentSessionId() }); },
  });
  await withServer(engine, async (req, res, proc) => {
    if (path(req) === '/login') proc.vars.user = 'alice';
    if (path(req) === '/logout') {
      const closed = await engine.closeSession(proc.sessionId);
      res.end(JSON.stringify({ closed, hooksBefore: hooks.length, varsAfter: proc.vars }));
      return;
    }
    res.end(JSON.stringify({ user: proc.vars.user ?? null }));
  }, async (server) => {
    const login = await request(server.url, { path: '/login' });
    const id = sessionIdOf(login);
    assert.ok(id);
    assert.equal((await request(server.url, { cookie: `4DSID=${id}` })).body, '{"user":"alice"}');

    const logout = await request(server.url, { path: '/logout', cookie: `4DSID=${id}` });
    assert.equal(logout.status, 200);
    assertClearingCookie(logout);
    assert.deepEqual(JSON.parse(logout.body), { closed: true, hooksBefore: 1, varsAfter: {} });
    assert.deepEqual(hooks, [{ reason: 'closed', user: 'alice', current: id }]);

    const next = await request(server.url, { cookie: `4DSID=${id}` });
    assert.equal(next.status, 200);
    assert.notEqual(sessionIdOf(next), id);
    assert.match(sessionIdOf(next) ?? '', UUID);
    assert.equal(next.body, '{"user":null}');

    await engine.stop();
    assert.equal(hooks.filter((h) => h.current === id).length, 1, 'the logged-out session is never hooked again');
  });
});

// ---- handler failures -----------------------------------------------------------------------------

test('a handler that throws or rejects gets a generic 500, an ERR_SESSION_HANDLER_FAILED error event, and its session keeps working', async () => {
  const { engine, errors } = engineWithErrors<{ n: number }>({ clock: new ManualClock(), init: () => ({ n: 0 }) });
  await withServer(engine, async (req, res, proc) => {
    proc.vars.n++;
    if (path(req) === '/throw') throw new Error('secret-sync-detail password=hunter2');
    if (path(req) === '/reject') {
      await settle(1);
      throw new Error('secret-async-detail token=abc');
    }
    res.end(String(proc.vars.n));
  }, async (server) => {
    const first = await request(server.url);
    const id = sessionIdOf(first);
    assert.ok(id);

    const thrown = await request(server.url, { path: '/throw', cookie: `4DSID=${id}` });
    assert.equal(thrown.status, 500);
    assert.doesNotMatch(thrown.body, /secret|hunter2|password/);
    assert.match(thrown.body, /Internal Server Error/);

    const rejected = await request(server.url, { path: '/reject', cookie: `4DSID=${id}` });
    assert.equal(rejected.status, 500);
    assert.doesNotMatch(rejected.body, /secret|token/);

    for (const failed of [thrown, rejected]) {
      const cookie = sessionCookie(failed);
      assert.ok(cookie === undefined || cookie === `4DSID=${id}`, 'a failed request never changes the session');
    }

    const after = await request(server.url, { cookie: `4DSID=${id}` });
    assert.equal(after.status, 200);
    assert.equal(sessionIdOf(after), id, 'same session');
    assert.equal(after.body, '4', 'vars kept across failures');

    assert.deepEqual(errors.map((e) => e.code), ['ERR_SESSION_HANDLER_FAILED', 'ERR_SESSION_HANDLER_FAILED']);
    assert.deepEqual(errors.map((e) => (e.cause as Error).message), ['secret-sync-detail password=hunter2', 'secret-async-detail token=abc']);
    assert.deepEqual(errors.map((e) => e.sessionId), [id, id]);
    assert.equal(engine.stats().handlerErrors, 2);
  });
});

// ---- serialization --------------------------------------------------------------------------------

test('two concurrent requests with one cookie never overlap: the second waits for the first', GUARD, async () => {
  const { engine } = engineWithErrors({ clock: new ManualClock() });
  const gates = [deferred(), deferred()];
  const started = deferred();
  let calls = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  const order: string[] = [];
  await withServer(engine, async (req, res) => {
    if (path(req) !== '/work') return void res.end('ok');
    const i = calls++;
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    order.push(`start${i}`);
    if (i === 0) started.resolve();
    await gates[i]?.promise;
    order.push(`end${i}`);
    inFlight--;
    res.end(String(i));
  }, async (server) => {
    const id = sessionIdOf(await request(server.url));
    assert.ok(id);
    const cookie = `4DSID=${id}`;

    const one = request(server.url, { path: '/work', cookie });
    await started.promise;
    const two = request(server.url, { path: '/work', cookie });
    await until(() => engine.sessions()[0]?.queuedRequests === 1, 'the second request is queued');
    assert.equal(calls, 1, 'the second handler has not started');

    gates[0]?.resolve();
    await until(() => calls === 2, 'the second handler starts once the first is done');
    gates[1]?.resolve();
    const [r1, r2] = await Promise.all([one, two]);
    assert.equal(r1.body, '0');
    assert.equal(r2.body, '1');
    assert.equal(sessionIdOf(r2), id);
    assert.equal(maxInFlight, 1);
    assert.deepEqual(order, ['start0', 'end0', 'start1', 'end1']);
  }, gates);
});
