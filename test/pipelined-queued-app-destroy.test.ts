// A pipelined response queued behind another, its client gone: the application's own destroy() of it
// with an ECONNRESET 'aborted' error (what stream.pipeline passes on from an aborted request or an aborted
// upstream response) says the application is done with the process, as any other end()/destroy() does.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type * as net from 'node:net';
import type { ServerResponse, IncomingMessage } from 'node:http';
import { ManualClock, SessionEngine, type SessionError } from '../src/index.js';
import { createServer } from '../src/adapters/node/index.js';
import { listen } from './contract/app.js';
import { deferred, eventually } from './helpers.js';
import { pipelined } from './pipelined-support.js';

const aborted = (): Error => Object.assign(new Error('aborted'), { code: 'ECONNRESET' });

type Finish = (req: IncomingMessage, res: ServerResponse, gate: Promise<void>) => void;

const cases: Record<string, Finish> = {
  'destroy(aborted) from a callback after the client left': (_req, res, gate) => {
    void gate.then(() => res.destroy(aborted()));
  },
  'destroy() without an error from a callback after the client left (control)': (_req, res, gate) => {
    void gate.then(() => res.destroy());
  },
  "the request's own 'aborted' error passed on to the response (req.on('error', e => res.destroy(e)))": (req, res) => {
    req.on('error', (error) => res.destroy(error));
  },
};

for (const [name, finish] of Object.entries(cases)) {
  describe(`queued pipelined response, client gone, callback-style handler: ${name}`, () => {
    test('its process is released once the application destroyed the response', { timeout: 10_000 }, async () => {
      const engine = new SessionEngine({ clock: new ManualClock(), closeTimeoutMs: 60_000 });
      const errors: SessionError[] = [];
      engine.on('error', (error) => errors.push(error));
      const gate = deferred();
      const headGate = deferred();
      const queuedRunning = deferred();
      const connectionClosed = deferred();
      let appDestroyed = false;
      const server = await listen(createServer(engine, (req, res, proc) => {
        if (req.url === '/') { res.end(); return; }
        if (req.url === '/hold') { void headGate.promise.then(() => res.end(proc.sessionId)); return; }
        // Listened to after the server's and the engine's own 'close' listeners: when it fires, they ran.
        req.socket.once('close', () => connectionClosed.resolve());
        queuedRunning.resolve();
        const destroy = res.destroy;
        res.destroy = function (this: ServerResponse, ...args: Parameters<ServerResponse['destroy']>) {
          appDestroyed = true;
          return destroy.apply(this, args);
        } as ServerResponse['destroy'];
        finish(req, res, gate.promise);
      }));
      let socket: net.Socket | undefined;
      try {
        const pipe = await pipelined(server);
        socket = pipe.socket;
        await queuedRunning.promise;
        appDestroyed = false;
        socket.destroy();
        await connectionClosed.promise;
        gate.resolve();
        assert.ok(await eventually(() => appDestroyed, 1_000), 'the application destroyed the response');
        assert.ok(await eventually(() => engine.sessions().some((s) => s.id === pipe.bId && !s.busy), 1_000),
          'released once the application destroyed it (not held until closeTimeoutMs)');
      } finally {
        gate.resolve();
        headGate.resolve();
        socket?.destroy();
        await engine.stop();
        await server.close();
      }
    });
  });
}

// Both responses fed by one upstream stream that aborts (pipeline(upstream, res) destroys each with the
// upstream's ECONNRESET 'aborted'): the head's destroy cuts the connection, and the queued response's
// destroy, in the same tick, comes while that connection is destroyed but before its 'close'.
describe('queued pipelined response: head and queued destroyed with one upstream\'s aborted error, in one tick', () => {
  test('the queued process is released once the application destroyed its response', { timeout: 10_000 }, async () => {
    const engine = new SessionEngine({ clock: new ManualClock(), closeTimeoutMs: 60_000 });
    const upstream = deferred<Error>();
    const queuedRunning = deferred();
    let appDestroyed = false;
    const server = await listen(createServer(engine, (req, res) => {
      if (req.url === '/') { res.end(); return; }
      if (req.url === '/queued') queuedRunning.resolve();
      void upstream.promise.then((error) => {
        res.destroy(error);
        if (req.url === '/queued') appDestroyed = true;
      });
    }));
    let socket: net.Socket | undefined;
    try {
      const pipe = await pipelined(server);
      socket = pipe.socket;
      await queuedRunning.promise;
      upstream.resolve(aborted());
      assert.ok(await eventually(() => appDestroyed, 1_000), 'the application destroyed the queued response');
      assert.ok(await eventually(() => engine.sessions().some((s) => s.id === pipe.bId && !s.busy), 1_000),
        'released once the application destroyed it (not held until closeTimeoutMs)');
    } finally {
      socket?.destroy();
      // A process held until closeTimeoutMs on a ManualClock would hold stop() too: bounded.
      await Promise.race([engine.stop(), new Promise((resolve) => setTimeout(resolve, 500).unref())]);
      await server.close();
    }
  });
});
