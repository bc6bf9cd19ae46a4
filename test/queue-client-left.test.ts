// A request waiting in its session's queue whose client leaves (hangs up, resets its HTTP/2 stream)
// keeps its place in line, so it still runs in turn (the contract suite's rule), but no longer counts
// against maxQueuedRequests: the session's next request is not refused 503 for a place held by nobody.
// Over HTTP/2: queue-place-reset-http2.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { once } from 'node:events';
import { ManualClock, SessionEngine, type SessionError } from '../src/index.js';
import type { AddressInfo } from 'node:net';
import { createServer } from '../src/adapters/node/index.js';
import { deferred, eventually, request, sessionIdOf } from './helpers.js';
import { leavingClient } from './leaving-client-support.js';
import { storeChoices } from './store-choices.js';

const IP = '127.0.0.1';

for (const [name, choose] of storeChoices({ pollIntervalMs: 20 })) {
  test(`${name}: a queued request whose client leaves still runs in turn, but the session's next request queues instead of a 503`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const engine = new SessionEngine<{ n?: number }>({ ...choice.options, clock: new ManualClock(), maxQueuedRequests: 1, init: () => ({ n: 0 }) });
    const errors: SessionError[] = [];
    engine.on('error', (error) => errors.push(error));
    try {
      const running = await engine.acquire({ sessionId: undefined, ip: IP });
      const id = running.sessionId;
      const client = leavingClient(id);
      const gone = engine.acquire(client.identity);
      assert.ok(await eventually(() => client.watched(), 5_000), 'it waits, its client watched');
      // Without a client leaving, the queue (1) is full.
      await assert.rejects(engine.acquire({ sessionId: id, ip: IP }), (error: SessionError) => error.code === 'ERR_SESSION_QUEUE_FULL');
      client.leave();
      const next = engine.acquire({ sessionId: id, ip: IP });
      running.release();
      const first = await gone;
      assert.equal(first.sessionId, id, 'the request whose client left runs in turn');
      assert.equal(client.watched(), false, 'watched only while it waited');
      first.proc.vars.n = 1;
      first.release();
      const second = await next;
      assert.equal(second.sessionId, id);
      assert.equal(second.proc.vars.n, 1, 'after the one whose client left');
      second.release();
      assert.deepEqual(errors.map((e) => e.code), []);
    } finally {
      await engine.stop();
    }
  });
}

test('node:http over HTTP/1.1: a queued request whose client hangs up does not hold the queue: the next request waits, and both run in turn', { timeout: 20_000 }, async () => {
  const engine = new SessionEngine({ clock: new ManualClock(), maxQueuedRequests: 1 });
  const gate = deferred();
  const order: string[] = [];
  const httpServer = createServer(engine, async (req, res, proc) => {
    order.push(String(req.url));
    if (req.url === '/hold') await gate.promise;
    res.end(proc.sessionId);
  });
  httpServer.listen(0, '127.0.0.1');
  await once(httpServer, 'listening');
  const server = { url: `http://127.0.0.1:${(httpServer.address() as AddressInfo).port}` };
  try {
    const cookie = `4DSID=${sessionIdOf(await request(server.url))}`;
    order.length = 0;
    const held = request(server.url, { path: '/hold', cookie });
    assert.ok(await eventually(() => engine.sessions()[0]?.busy === true));
    const socket = net.connect(Number(new URL(server.url).port), '127.0.0.1');
    socket.on('error', () => {});
    await once(socket, 'connect');
    socket.write(`GET /gone HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\n\r\n`);
    assert.ok(await eventually(() => engine.sessions()[0]?.queuedRequests === 1), 'it waits');
    socket.destroy();
    assert.ok(await eventually(() => new Promise<boolean>((resolve) => httpServer.getConnections((_error, count) => resolve(count === 1)))), 'the server saw the client leave');
    const next = request(server.url, { path: '/next', cookie });
    assert.ok(await eventually(() => engine.sessions()[0]?.queuedRequests === 2), 'the next request waits too (no 503)');
    gate.resolve();
    assert.equal((await next).status, 200);
    await held;
    assert.deepEqual(order, ['/hold', '/gone', '/next'], 'in turn, the one whose client left included');
  } finally {
    gate.resolve();
    httpServer.closeAllConnections();
    httpServer.close();
    await engine.stop();
  }
});
