// The contract's second half: one request at a time per session, closes from outside and inside,
// clients that leave, and stop(). Run by contractSuite (suite.ts) against every server.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { request, settle, sessionIdOf } from '../helpers.js';
import type { ContractApp, ContractServer, StartServer } from './app.js';
import { abandonedRequest, assertClearingCookie, GUARD, json, post, slowPost, until, UUID, withApp } from './harness.js';
import { headerValues, parseRawResponse, type RawResponse } from '../raw-http.js';

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

  test('a request with a body whose client left while it waited for the process: when its turn comes the process goes back at once, the next request is served', GUARD, async () => {
    await withApp(start, {}, async ({ server, app, engine }) => {
      const id = sessionIdOf(await request(server.url));
      assert.ok(id);
      const held = request(server.url, { path: '/hold', cookie: `4DSID=${id}` });
      await app.started.promise;
      const socket = net.connect(Number(new URL(server.url).port), '127.0.0.1');
      socket.on('error', () => {}); // the hang-up is ours
      socket.write(`POST /form HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: 4DSID=${id}\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n0123456789`);
      await until(() => engine.sessions()[0]?.queuedRequests === 1, 'the POST waits for the process');
      socket.destroy();
      await until(() => new Promise<boolean>((resolve) => server.server.getConnections((_error, count) => resolve(count === 1))), 'the server saw the client leave');

      app.gate.resolve();
      assert.equal(json(await held).n, 2);
      // No clock moves: a process held until closeTimeoutMs would keep this one waiting past the guard.
      const next = await request(server.url, { cookie: `4DSID=${id}` });
      assert.equal(sessionIdOf(next), id);
      await until(() => engine.stats().busySessions === 0, 'the process is given back');
    });
  });

  test('requests pipelined on a connection the client keeps open: answered in order, each in its session, and the connection keeps no listener per request', GUARD, async () => {
    await withApp(start, {}, async ({ server, errors }) => {
      const ids = await twoSessions(server);
      const sockets: net.Socket[] = [];
      server.server.on('connection', (socket: net.Socket) => sockets.push(socket));
      const client = net.connect(Number(new URL(server.url).port), '127.0.0.1');
      let received = '';
      client.setEncoding('utf8');
      client.on('data', (chunk: string) => { received += chunk; });
      const count = 20;
      client.write(Array.from({ length: count }, (_, i) => `GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: 4DSID=${ids[i % 2]}\r\n\r\n`).join(''));
      await until(() => (received.match(/HTTP\/1\.1 200/g) ?? []).length === count, 'every response came');
      const counts = [...received.matchAll(/"n":(\d+)/g)].map((m) => Number(m[1]));
      assert.deepEqual(counts, Array.from({ length: count }, (_, i) => 2 + Math.floor(i / 2)), 'in order, each session counting its own');
      assert.equal(sockets.length, 1);
      assert.ok(sockets[0]!.listenerCount('close') <= 3, `close listeners on the connection: ${sockets[0]!.listenerCount('close')}`);
      client.destroy();
      assert.equal(errors.length, 0);
    });
  });

  test('pipelined requests whose client leaves while both handlers hang: each is reported closeTimeoutMs later, the queued response\'s too; once they end, both sessions are served', GUARD, async () => {
    await withApp(start, {}, async ({ server, app, clock, errors }) => {
      const ids = await twoSessions(server);
      await pipelineThenLeave(server, app, ids);
      await settle(5);
      assert.equal(errors.length, 0, 'both handlers still hold their process');

      // closeTimeoutMs. Where the adapter sees handlers settle they keep their processes until they do
      // (no overlap; test/release-handler-unsettled.test.ts); where it cannot (Express) the processes go.
      clock.advance(30_000);
      await until(() => errors.length === 2, 'both are reported at the deadline');
      assert.deepEqual(errors.map((error) => [error.code, error.sessionId].join(' ')).sort(), ids.map((id) => `ERR_SESSION_DRAIN_TIMEOUT ${id}`).sort());
      assert.equal(app.inFlight, 2, 'reported at the deadline, not because a handler ended');
      app.gate.resolve();
      await until(() => app.inFlight === 0, 'both handlers ended');
      await servedAtOnce(server, ids);
      assert.equal(errors.length, 2, 'reported once each');
    });
  });

  test('pipelined requests whose client leaves, then both handlers answer: both processes are given back at once, nothing reported', GUARD, async () => {
    await withApp(start, {}, async ({ server, app, errors }) => {
      const ids = await twoSessions(server);
      await pipelineThenLeave(server, app, ids);
      app.gate.resolve();
      await until(() => app.inFlight === 0, 'both handlers answered');
      await servedAtOnce(server, ids);
      assert.deepEqual(errors, []);
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
      // A client keeping its connection alive is told to come back on a new one (which may reach another node).
      const kept = await keepAliveRequest(server);
      assert.equal(kept.status, 503);
      assert.deepEqual(headerValues(kept, 'connection'), ['close']);
      assert.equal(kept.closedByServer, true, 'the server closed the connection after the 503');

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

/** Two /hold requests in one write on one connection (the second's response queued behind the first's), then the client leaves. */
async function pipelineThenLeave(server: ContractServer, app: ContractApp, ids: readonly [string, string]): Promise<void> {
  // Node runs the second handler at once; its response waits for the first's to finish.
  const socket = net.connect(Number(new URL(server.url).port), '127.0.0.1');
  socket.on('error', () => {}); // the hang-up is ours
  socket.write(ids.map((id) => `GET /hold HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: 4DSID=${id}\r\n\r\n`).join(''));
  await until(() => app.inFlight === 2, 'both handlers run');
  socket.destroy();
  await until(() => new Promise<boolean>((resolve) => server.server.getConnections((_error, count) => resolve(count === 0))), 'the server saw the client leave');
}

/** Two sessions the test owns, each served once (n = 1). */
async function twoSessions(server: ContractServer): Promise<[string, string]> {
  const first = sessionIdOf(await request(server.url));
  const second = sessionIdOf(await request(server.url));
  assert.ok(first !== undefined && second !== undefined && first !== second);
  return [first, second];
}

/** Each session answers its next request at once, after its /hold request's n++ (n = 3). */
async function servedAtOnce(server: ContractServer, ids: readonly string[]): Promise<void> {
  for (const id of ids) {
    const next = await request(server.url, { cookie: `4DSID=${id}` });
    assert.deepEqual([sessionIdOf(next), json(next).n], [id, 3], 'served, after the abandoned request\'s n++');
  }
}

/** One request on a connection the client keeps open: the answer, and whether the server then closed it. */
function keepAliveRequest(server: ContractServer): Promise<RawResponse & { closedByServer: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(new URL(server.url).port), '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      if (text.includes('\r\n\r\n')) resolve({ ...parseRawResponse(Buffer.concat(chunks)), closedByServer: false });
      else reject(new Error(`no answer: ${JSON.stringify(text.slice(0, 200))}`));
    }, 2_000);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ ...parseRawResponse(Buffer.concat(chunks)), closedByServer: true });
    });
    socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n');
  });
}
