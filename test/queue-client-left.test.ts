// A request waiting in its session's queue whose client leaves (hangs up, resets its HTTP/2 stream)
// gives its place back at once (ERR_SESSION_CLIENT_LEFT, neither reported nor counted as a refusal),
// not when its turn comes: with maxQueuedRequests reached, the session's next request is not refused
// for a queue held by nobody. Over HTTP/2: queue-place-reset-http2.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { once } from 'node:events';
import { ManualClock, SessionEngine, type RequestIdentity, type SessionError } from '../src/index.js';
import { deferred, eventually, request, sessionIdOf, startServer } from './helpers.js';
import { storeChoices } from './store-choices.js';

const IP = '127.0.0.1';

/** A request identity whose client the test makes leave. */
function leavingClient(sessionId: string): { identity: RequestIdentity; leave(): void; watched(): boolean } {
  let withdraw: (() => void) | undefined;
  return {
    identity: {
      sessionId, ip: IP,
      watchClientLeaving: (onLeft) => { withdraw = onLeft; return () => { withdraw = undefined; }; },
    },
    leave: () => withdraw?.(),
    watched: () => withdraw !== undefined,
  };
}

for (const [name, choose] of storeChoices({ pollIntervalMs: 20 })) {
  test(`${name}: a queued request whose client leaves gives its place back at once; the next request queues and runs`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const engine = new SessionEngine({ ...choice.options, clock: new ManualClock(), maxQueuedRequests: 1 });
    const errors: SessionError[] = [];
    engine.on('error', (error) => errors.push(error));
    try {
      const running = await engine.acquire({ sessionId: undefined, ip: IP });
      const id = running.sessionId;
      const client = leavingClient(id);
      const gone = engine.acquire(client.identity).then(() => 'ran', (error: SessionError) => error.code);
      assert.ok(await eventually(() => client.watched() && engine.sessions()[0]?.queuedRequests === 1, 5_000), 'it waits, its client watched');
      client.leave();
      assert.equal(await gone, 'ERR_SESSION_CLIENT_LEFT');
      assert.equal(client.watched(), false, 'no longer watched');
      // The queue holds one: the session's next request may wait there again.
      const next = engine.acquire({ sessionId: id, ip: IP });
      assert.ok(await eventually(() => engine.sessions()[0]?.queuedRequests === 1, 5_000), 'the next request waits in the freed place');
      running.release();
      const lease = await next;
      assert.equal(lease.sessionId, id);
      lease.release();
      const { rejected } = engine.stats();
      assert.equal(rejected.queueFull + rejected.queueTimeout, 0, 'a client leaving is no refusal');
      assert.deepEqual(errors.map((e) => e.code), []);
    } finally {
      await engine.stop();
    }
  });

  test(`${name}: a request whose turn came is not withdrawn when its client leaves afterwards (its process is its own until released)`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const engine = new SessionEngine({ ...choice.options, clock: new ManualClock() });
    try {
      const running = await engine.acquire({ sessionId: undefined, ip: IP });
      const client = leavingClient(running.sessionId);
      const waiting = engine.acquire(client.identity);
      assert.ok(await eventually(() => client.watched(), 5_000));
      running.release();
      const lease = await waiting;
      assert.equal(client.watched(), false, 'watched only while it waited');
      client.leave();
      assert.equal(lease.sessionId, running.sessionId);
      lease.release();
    } finally {
      await engine.stop();
    }
  });
}

test('node:http over HTTP/1.1: a queued request whose client hangs up frees its queue place', { timeout: 20_000 }, async () => {
  const engine = new SessionEngine({ clock: new ManualClock(), maxQueuedRequests: 1 });
  const gate = deferred();
  const server = await startServer(engine, async (req, res, proc) => {
    if (req.url === '/hold') await gate.promise;
    res.end(proc.sessionId);
  });
  try {
    const cookie = `4DSID=${sessionIdOf(await request(server.url))}`;
    const held = request(server.url, { path: '/hold', cookie });
    assert.ok(await eventually(() => engine.sessions()[0]?.busy === true));
    const { port } = new URL(server.url);
    const socket = net.connect(Number(port), '127.0.0.1');
    socket.on('error', () => {});
    await once(socket, 'connect');
    socket.write(`GET / HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\n\r\n`);
    assert.ok(await eventually(() => engine.sessions()[0]?.queuedRequests === 1), 'it waits');
    socket.destroy();
    assert.ok(await eventually(() => engine.sessions()[0]?.queuedRequests === 0), 'its place is given back when its client hangs up');
    const next = request(server.url, { cookie });
    assert.ok(await eventually(() => engine.sessions()[0]?.queuedRequests === 1), 'the next request waits in it');
    gate.resolve();
    assert.equal((await next).status, 200);
    await held;
  } finally {
    gate.resolve();
    await server.close();
    await engine.stop();
  }
});
