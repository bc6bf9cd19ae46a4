// A pipelined response queued behind a slower one on its connection (HTTP/1.1 pipelining, as a proxy
// may do with several browsers' requests), ended by its application: its session is free again at once,
// as when the response is not queued, on every adapter, also where the handler's end cannot be seen
// (Express, a hijacked Fastify reply, a callback-style node:http handler). Node emits the queued
// response's 'close' only once the responses ahead of it are written: a release waiting for it kept the
// session busy that long (not evictable, its other requests waiting, a closeSession of it waiting
// closeTimeoutMs and reporting a drain timeout).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type * as net from 'node:net';
import { ManualClock, SessionEngine, type SessionError } from '../src/index.js';
import { deferred, eventually } from './helpers.js';
import { pipelined, pipelinedServers } from './pipelined-support.js';

for (const [name, start] of Object.entries(pipelinedServers)) {
  describe(`pipelined response queued behind another: ${name}`, () => {
    test('its session is free once its handler has ended it; closing it does not wait for the head of the line', { timeout: 10_000 }, async () => {
      // A manual clock: closeTimeoutMs never passes, so a close waiting on the head of the line never ends.
      const engine = new SessionEngine({ clock: new ManualClock(), closeTimeoutMs: 2_000 });
      const errors: SessionError[] = [];
      engine.on('error', (error) => errors.push(error));
      const gate = deferred();
      const started = deferred();
      let queuedEnded = false;
      const server = await start(engine, async (path, sessionId, end) => {
        if (path === '/hold') {
          started.resolve();
          await gate.promise;
        }
        // The answer comes from a callback (a database reply, say), not during the handler's own run.
        await new Promise((resolve) => setImmediate(resolve));
        end(sessionId);
        if (path === '/queued') queuedEnded = true;
      });
      let socket: net.Socket | undefined;
      try {
        const pipe = await pipelined(server);
        socket = pipe.socket;
        const bId = pipe.bId;
        await started.promise;
        assert.ok(await eventually(() => queuedEnded), 'the queued request ran and ended its response');
        const free = await eventually(() => engine.sessions().some((s) => s.id === bId && !s.busy), 500);
        assert.ok(free, 'the session of the ended, queued response is free while the head of the line runs');
        let closed: boolean | undefined;
        void engine.closeSession(bId).then((c) => { closed = c; });
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
}
