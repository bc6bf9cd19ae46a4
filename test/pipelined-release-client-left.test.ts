// A pipelined response queued behind another on its connection, continued: its client leaving is not the
// application ending it (the process stays with a callback still using it), and Fastify's `return reply`
// sent from a callback frees its session once sent, as the cases of pipelined-release.test.ts do.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type * as net from 'node:net';
import Fastify from 'fastify';
import { ManualClock, SessionEngine, type SessionError } from '../src/index.js';
import { sessions as fastifySessions } from '../src/adapters/fastify/index.js';
import { listen } from './contract/app.js';
import { deferred, eventually } from './helpers.js';
import { pipelined, unseenHandlerServers } from './pipelined-support.js';

// The queued response's client hangs up while its handler's work goes on (callback style): the engine
// itself destroys the queued response (closeIfStillQueued), and that destroy went through the wrapper
// meant for the application's own end/destroy: the process was released while the callback still
// used it. docs/adapters.md: "if the client hangs up (or the connection is cut) first, the process is
// held until the application ends the response".
for (const [name, start] of Object.entries(unseenHandlerServers)) {
  describe(`pipelined response queued behind another, its client leaves before its handler ends it: ${name}`, () => {
    test('its process is held until the application ends the response, not released when the connection goes', { timeout: 10_000 }, async () => {
      const engine = new SessionEngine({ clock: new ManualClock(), closeTimeoutMs: 2_000 });
      const errors: SessionError[] = [];
      engine.on('error', (error) => errors.push(error));
      const gate = deferred();
      const queuedGate = deferred();
      const queuedRunning = deferred();
      let queuedEnded = false;
      const server = await start(engine, async (path, sessionId, end) => {
        if (path === '/hold') await gate.promise;
        if (path === '/queued') {
          queuedRunning.resolve();
          await queuedGate.promise; // its work (a database reply, say) still uses the process
        }
        end(sessionId);
        if (path === '/queued') queuedEnded = true;
      });
      let socket: net.Socket | undefined;
      try {
        const pipe = await pipelined(server);
        socket = pipe.socket;
        await queuedRunning.promise;
        assert.ok(engine.sessions().some((s) => s.id === pipe.bId && s.busy), 'busy while its handler runs');
        socket.destroy(); // the client leaves: the queued response is closed with its connection
        const freed = await eventually(() => engine.sessions().some((s) => s.id === pipe.bId && !s.busy), 300);
        assert.equal(freed, false, 'the process of the queued request is still used by its callback: not released');
        queuedGate.resolve();
        assert.ok(await eventually(() => queuedEnded), 'the callback ended the response');
        assert.ok(await eventually(() => engine.sessions().some((s) => s.id === pipe.bId && !s.busy)), 'released once the application ended it');
        assert.deepEqual(errors.map((e) => e.code), []);
      } finally {
        gate.resolve();
        queuedGate.resolve();
        socket?.destroy();
        await engine.stop();
        await server.close();
      }
    });
  });
}

// Fastify's documented idiom for an async handler that sends later, from a callback: `return reply`.
// Fastify's reply.then waits for the raw response to finish (eos), which a queued response does only
// once the responses ahead of it are written: the handler is seen running that long, and the session
// stays busy behind the head of the line, though the application ended its response (662bbd7 says "on
// every adapter").
describe('pipelined response queued behind another: fastify, `return reply` sent from a callback', () => {
  test('its session is free once the application has sent it; closing it does not wait for the head of the line', { timeout: 10_000 }, async () => {
    const engine = new SessionEngine({ clock: new ManualClock(), closeTimeoutMs: 2_000 });
    const errors: SessionError[] = [];
    engine.on('error', (error) => errors.push(error));
    const gate = deferred();
    const started = deferred();
    let queuedSent = false;
    const app = Fastify();
    await app.register(fastifySessions, { engine });
    app.get('/*', async (request, reply) => {
      const path = request.url;
      const sessionId = request.proc.sessionId;
      void (async () => {
        if (path === '/hold') {
          started.resolve();
          await gate.promise;
        }
        await new Promise((resolve) => setImmediate(resolve));
        reply.send(sessionId);
        if (path === '/queued') queuedSent = true;
      })();
      return reply;
    });
    await app.ready();
    const server = await listen(app.server, () => app.close());
    let socket: net.Socket | undefined;
    try {
      const pipe = await pipelined(server);
      socket = pipe.socket;
      await started.promise;
      assert.ok(await eventually(() => queuedSent), 'the queued request ran and sent its reply');
      const free = await eventually(() => engine.sessions().some((s) => s.id === pipe.bId && !s.busy), 500);
      assert.ok(free, 'the session of the sent, queued reply is free while the head of the line runs');
      let closed: boolean | undefined;
      void engine.closeSession(pipe.bId).then((c) => { closed = c; });
      assert.ok(await eventually(() => closed !== undefined, 2_000), 'closeSession ends while the head of the line still runs');
      gate.resolve();
      assert.equal(closed, true);
      assert.deepEqual(errors.map((e) => e.code), []);
    } finally {
      gate.resolve();
      socket?.destroy();
      await engine.stop();
      await server.close();
    }
  });
});
