// The contract's second half: one request at a time per session, closes from outside and inside,
// clients that leave, and stop(). Run by contractSuite (suite.ts) against every server.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request, settle, sessionIdOf } from '../helpers.js';
import type { StartServer } from './app.js';
import { abandonedRequest, assertClearingCookie, GUARD, json, post, slowPost, until, UUID, withApp } from './harness.js';

export function lifecycleContract(start: StartServer): void {
  test('two requests with one cookie never overlap: the second waits for the first, in order', GUARD, async () => {
    await withApp(start, {}, async ({ server, app, engine }) => {
      const id = sessionIdOf(await request(server.url));
      assert.ok(id);
      const cookie = `4DSID=${id}`;
      const first = request(server.url, { path: '/hold', cookie });
      await app.started.promise;
      const second = request(server.url, { path: '/second', cookie });
      await until(() => engine.sessions()[0]?.queuedRequests === 1, 'the second request is queued');
      assert.deepEqual(app.order, ['start /', 'end /', 'start /hold'], 'the second handler has not started');

      app.gate.resolve();
      const [r1, r2] = await Promise.all([first, second]);
      assert.equal(json(r1).n, 2);
      assert.equal(json(r2).n, 3, 'the second saw what the first wrote');
      assert.equal(app.maxInFlight, 1);
      assert.deepEqual(app.order.slice(2), ['start /hold', 'end /hold', 'start /second', 'end /second']);
      assert.equal(engine.stats().busySessions, 0, 'the process was given back');
    });
  });

  test('closeSession from outside during a request: the response clears the cookie (Max-Age=0), the hook runs after the request, once, and the id never comes back', GUARD, async () => {
    await withApp(start, {}, async ({ server, app, engine }) => {
      const id = sessionIdOf(await request(server.url));
      assert.ok(id);
      const held = request(server.url, { path: '/hold', cookie: `4DSID=${id}` });
      await app.started.promise;

      const closing = engine.closeSession(id);
      await settle();
      assert.deepEqual(app.hooks, [], 'onClose waits for the request in flight');
      assert.equal(engine.sessions().some((s) => s.id === id), false, 'the id is dead at once');
      const during = await request(server.url, { cookie: `4DSID=${id}` });
      assert.notEqual(sessionIdOf(during), id);
      assert.equal(json(during).n, 1, 'a new session meanwhile');

      app.gate.resolve();
      const response = await held;
      assert.equal(response.status, 200);
      assertClearingCookie(response);
      assert.equal(app.hooksSeenByHold, 0);
      assert.equal(await closing, true);
      assert.deepEqual(app.hooks, [{ reason: 'closed', sessionId: id, vars: { n: 2, x: 'after' } }], 'once, with the context the request left');

      const later = await request(server.url, { cookie: `4DSID=${id}` });
      assert.match(sessionIdOf(later) ?? '', UUID);
      assert.notEqual(sessionIdOf(later), id);
      assert.deepEqual(json(later).x, null, 'nothing the old request wrote');
      assert.equal(app.hooks.length, 1);
    });
  });

  test('logout from inside, also after reading a request body: the hook sees the vars at once, the handler goes on with a reset context, the response clears the cookie', GUARD, async () => {
    await withApp(start, {}, async ({ server, app, engine }) => {
      for (const viaPost of [false, true]) {
        const id = sessionIdOf(await post(server.url, '/login', 'alice'));
        assert.ok(id);
        assert.equal(json(await request(server.url, { cookie: `4DSID=${id}` })).user, 'alice');
        const hooksBefore = app.hooks.length;

        // With a body, the handler runs after the framework read it from stream events: the process
        // must still be current there, or the logout would wait for its own request (closeTimeoutMs).
        const busy = (): boolean => engine.sessions().some((s) => s.id === id && s.busy);
        const logout = viaPost ? await slowPost(server.url, '/logout', 'bye', `4DSID=${id}`, busy) : await request(server.url, { path: '/logout', cookie: `4DSID=${id}` });
        assertClearingCookie(logout);
        assert.deepEqual(json(logout), { closed: true, hooksBefore: hooksBefore + 1, varsAfter: {}, sid: id, body: viaPost ? 'bye' : '' });
        assert.deepEqual(app.hooks.at(-1), { reason: 'closed', sessionId: id, vars: { n: 1, user: 'alice' } });

        const next = await request(server.url, { cookie: `4DSID=${id}` });
        assert.notEqual(sessionIdOf(next), id);
        assert.deepEqual(json(next).user, null);
      }
      await engine.stop();
      assert.equal(app.hooks.filter((h) => h.reason === 'closed').length, 2, 'a logged-out session is never hooked again');
    });
  });

  test('a client that hangs up mid-request: the session\'s next request waits until the abandoned handler is done, then runs', GUARD, async () => {
    await withApp(start, {}, async ({ server, app, engine }) => {
      const id = sessionIdOf(await request(server.url));
      assert.ok(id);
      await abandonedRequest(server, '/hold', `4DSID=${id}`, app.started.promise);
      const next = request(server.url, { path: '/next', cookie: `4DSID=${id}` });
      await until(() => engine.sessions()[0]?.queuedRequests === 1, 'the next request waits for the abandoned one');
      assert.equal(app.inFlight, 1, 'only the abandoned handler runs');

      app.gate.resolve();
      const response = await next;
      assert.equal(sessionIdOf(response), id);
      assert.equal(json(response).x, 'after', 'it ran after the abandoned handler finished');
      assert.equal(app.maxInFlight, 1);
      await until(() => engine.stats().busySessions === 0, 'the process is given back');
    });
  });

  test('a request whose client left while it waited for the process still runs in turn, then gives the process back', GUARD, async () => {
    await withApp(start, {}, async ({ server, app, engine }) => {
      const id = sessionIdOf(await request(server.url));
      assert.ok(id);
      const held = request(server.url, { path: '/hold', cookie: `4DSID=${id}` });
      await app.started.promise;
      await abandonedRequest(server, '/gone', `4DSID=${id}`, () => engine.sessions()[0]?.queuedRequests === 1);

      app.gate.resolve();
      assert.equal(json(await held).n, 2);
      const next = await request(server.url, { cookie: `4DSID=${id}` });
      assert.equal(json(next).n, 4, 'the abandoned request ran (n = 3) before this one');
      assert.deepEqual(app.order.filter((o) => o.startsWith('start')), ['start /', 'start /hold', 'start /gone', 'start /']);
      await until(() => engine.stats().busySessions === 0, 'the process is given back');
    });
  });

  test('engine.stop() during a request: it completes, new requests get 503, and every session\'s hook runs once with shutdown', GUARD, async () => {
    await withApp(start, {}, async ({ server, app, engine }) => {
      const idle = sessionIdOf(await request(server.url));
      assert.ok(idle);
      const held = request(server.url, { path: '/hold' });
      await app.started.promise;
      const busy = engine.sessions().find((s) => s.id !== idle)?.id;
      assert.ok(busy);

      const stopping = engine.stop();
      await settle();
      assert.equal(app.hooks.some((h) => h.sessionId === busy), false, 'the busy session is not hooked while its request runs');
      for (const cookie of [undefined, `4DSID=${idle}`]) {
        const refused = await request(server.url, cookie === undefined ? {} : { cookie });
        assert.equal(refused.status, 503);
        assert.equal(refused.headers['retry-after'], '1');
        assert.deepEqual(refused.setCookies, []);
      }

      app.gate.resolve();
      const done = await held;
      assert.equal(json(done).x, 'after');
      assertClearingCookie(done); // its session was already closing when the head was written
      await stopping;
      assert.deepEqual(app.hooks.map((h) => [h.sessionId, h.reason]).sort(), [[idle, 'shutdown'], [busy, 'shutdown']].sort());
      assert.deepEqual(engine.sessions(), []);
    });
  });
}
