// When the client leaves before the application has ended its response: the process stays the
// request's until the application is done with it (its handler settles, or, where the adapter cannot see
// the handler, it ends the response), so requests of one process never overlap; and at the latest after
// closeTimeoutMs it is released anyway and reported (ERR_SESSION_DRAIN_TIMEOUT), so a response nobody
// ends (an event stream left open, a pipe cut off) cannot hold its session for ever. Time is the
// engine's ManualClock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as net from 'node:net';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import express from 'express';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import type { WebProcess } from '../src/index.js';
import { sessions } from '../src/adapters/express/index.js';
import { sessions as fastifySessions } from '../src/adapters/fastify/index.js';
import { listen } from './contract/app.js';
import { deferred, request, sessionIdOf, startServer } from './helpers.js';
import { track } from './engine-harness.js';
import { CLOSE_TIMEOUT_MS, callbackHandler, expectHeldWhileTheHandlerGoesOn, expectNextWaitsForTheCallback, expectReleasedAtTheDeadline, newProbe, waitFor, withEngine, type Vars } from './release-support.js';
import { until } from './http-support.js';

test('node:http, a callback-style handler whose client leaves before it ends the response: the next request of the session waits until it does (no overlap), then runs with what it left', async () => {
  await withEngine(async (engine, _clock, errors) => {
    const probe = newProbe();
    const server = await startServer(engine, callbackHandler(probe));
    try {
      await expectNextWaitsForTheCallback(server.url, probe, errors);
    } finally {
      probe.finish.resolve();
      await server.close();
    }
  });
});

test('node:http, a handler that never ends a response its client left: released after closeTimeoutMs and reported, the session served again', async () => {
  await withEngine(async (engine, clock, errors) => {
    const probe = newProbe();
    const server = await startServer(engine, callbackHandler(probe));
    try {
      await expectReleasedAtTheDeadline(server.url, engine, clock, errors, probe);
    } finally {
      await server.close();
    }
  });
});

test('Express, a response cut off (its client left) that the application never ends: released after closeTimeoutMs and reported, the session served again', async () => {
  await withEngine(async (engine, clock, errors) => {
    const probe = newProbe();
    const app = express();
    app.use(sessions(engine));
    const handler = callbackHandler(probe);
    app.use((req, res) => handler(req, res, req.proc as WebProcess<Vars>));
    const server = await listen(http.createServer(app));
    try {
      await expectReleasedAtTheDeadline(server.url, engine, clock, errors, probe);
    } finally {
      await server.close();
    }
  });
});

/** `/cut` is cut by its own synchronous handler; the session's next request must be served at once. */
async function expectFreeAfterItsOwnCut(url: string, errors: unknown[]): Promise<void> {
  const id = sessionIdOf(await request(url));
  await assert.rejects(request(url, { path: '/cut', cookie: `4DSID=${id}` }));
  const answered = await waitFor(track(request(url, { cookie: `4DSID=${id}` })));
  assert.equal(sessionIdOf(answered), id);
  assert.deepEqual(errors, []);
}

const OWN_CUTS = {
  'res.destroy()': (req: http.IncomingMessage, res: http.ServerResponse): void => { void req; res.destroy(); },
  'req.socket.destroy()': (req: http.IncomingMessage): void => { req.socket.destroy(); },
} as const;

for (const [how, cut] of Object.entries(OWN_CUTS)) {
  test(`node:http, a handler that cuts its own response (${how}) and returns: the process is free at once, nothing reported`, async () => {
    await withEngine(async (engine, _clock, errors) => {
      const server = await startServer(engine, (req: http.IncomingMessage, res: http.ServerResponse, proc: WebProcess<Vars>) => {
        if (req.url === '/cut') {
          cut(req, res);
          return;
        }
        res.end(String(proc.vars.n ?? 0));
      });
      try {
        await expectFreeAfterItsOwnCut(server.url, errors);
      } finally {
        await server.close();
      }
    });
  });

  test(`Fastify, a synchronous handler that cuts its own response (${how}) and returns: the process is free at once, nothing reported`, async () => {
    await withEngine(async (engine, _clock, errors) => {
      const app = Fastify();
      await app.register(fastifySessions, { engine });
      app.get('/*', (req, reply) => {
        if (req.url === '/cut') {
          cut(req.raw, reply.raw);
          return;
        }
        reply.send(String((req.proc as WebProcess<Vars>).vars.n ?? 0));
      });
      await app.ready();
      const server = await listen(app.server, () => app.close());
      try {
        await expectFreeAfterItsOwnCut(server.url, errors);
      } finally {
        await server.close();
      }
    });
  });
}

test('node:http, a handler of a pipelined request (its response queued behind another) that cuts the connection during its synchronous run: its process is free at once', async () => {
  await withEngine(async (engine, _clock, errors) => {
    const gate = deferred<void>();
    const server = await startServer(engine, (req: http.IncomingMessage, res: http.ServerResponse, proc: WebProcess<Vars>) => {
      if (req.url === '/hold') {
        void gate.promise.then(() => res.end('held'));
        return;
      }
      if (req.url === '/cut') {
        req.socket.destroy();
        return;
      }
      res.end(String(proc.vars.n ?? 0));
    });
    try {
      const held = sessionIdOf(await request(server.url));
      const cutter = sessionIdOf(await request(server.url));
      const socket = net.connect(Number(new URL(server.url).port), '127.0.0.1');
      socket.on('error', () => {}); // cut by the server
      socket.write(`GET /hold HTTP/1.1\r\nHost: x\r\nCookie: 4DSID=${held}\r\n\r\nGET /cut HTTP/1.1\r\nHost: x\r\nCookie: 4DSID=${cutter}\r\n\r\n`);
      await once(socket, 'close');
      const answered = await waitFor(track(request(server.url, { cookie: `4DSID=${cutter}` })));
      assert.equal(sessionIdOf(answered), cutter, 'served at once, no clock moved');
      assert.deepEqual(errors, []);
    } finally {
      gate.resolve();
      await server.close();
    }
  });
});

// A response queued behind another on its connection never gets Node's own 'close' when the connection
// goes: the binding closes it. It must read as closed to stream.finished too, which pipeline() and
// Fastify's reply.then wait on: otherwise a handler that streams into it never settles and its session
// stays busy for good (never timed out, never evicted).
for (const server of ['node:http', 'Fastify'] as const) {
  test(`${server}, a handler that streams into a pipelined response (queued behind another of another session) whose client hung up: it settles, and its session is served again at once`, { timeout: 20_000 }, async () => {
    await withEngine(async (engine, _clock, errors) => {
      const gate = deferred<void>();
      const settled: string[] = [];
      const stream = async (into: (source: Readable) => Promise<unknown>): Promise<void> => {
        await gate.promise; // a database call, say, while the client leaves
        try {
          await into(Readable.from(['x\n', 'y\n']));
          settled.push('streamed');
        } catch (error) {
          settled.push((error as NodeJS.ErrnoException).code ?? 'error');
        }
      };
      let running: { url: string; close(): Promise<void> };
      if (server === 'node:http') {
        running = await startServer(engine, async (req: http.IncomingMessage, res: http.ServerResponse) => {
          if (req.url === '/pipe') return stream((source) => pipeline(source, res));
          res.end('ok');
        });
      } else {
        const app = Fastify();
        await app.register(fastifySessions, { engine });
        app.get('/', async () => 'ok');
        app.get('/pipe', async (_req, reply) => {
          await stream(async (source) => { await reply.send(source); });
          return reply;
        });
        await app.ready();
        running = await listen(app.server, () => app.close());
      }
      try {
        const [a, b] = [sessionIdOf(await request(running.url)), sessionIdOf(await request(running.url))];
        const socket = net.connect(Number(new URL(running.url).port), '127.0.0.1');
        socket.on('error', () => {});
        socket.write(`GET /pipe HTTP/1.1\r\nHost: x\r\nCookie: 4DSID=${a}\r\n\r\nGET /pipe HTTP/1.1\r\nHost: x\r\nCookie: 4DSID=${b}\r\n\r\n`);
        await new Promise((resolve) => setTimeout(resolve, 50)); // both read by the server
        socket.destroy();
        await once(socket, 'close');
        gate.resolve();
        for (const id of [a, b]) {
          const answered = await waitFor(track(request(running.url, { cookie: `4DSID=${id}` })));
          assert.equal(sessionIdOf(answered), id, 'served, no clock moved');
        }
        assert.equal(engine.stats().busySessions, 0);
        assert.equal(settled.length, 2, `both handlers settled: ${JSON.stringify(settled)}`);
        assert.deepEqual(errors.filter((e) => e.code === 'ERR_SESSION_DRAIN_TIMEOUT'), []);
      } finally {
        gate.resolve();
        await running.close();
      }
    });
  });
}

test('Fastify, an async handler that goes on after sending its reply: held until it settles, however long, with no deadline (its response finished: nobody left)', async () => {
  await withEngine(async (engine, clock, errors) => {
    const gate = deferred<void>();
    let inFlight = 0;
    let maxInFlight = 0;
    const app = Fastify();
    await app.register(fastifySessions, { engine });
    app.get('/', async (req, reply) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      const proc = req.proc as WebProcess<Vars>;
      if (req.url === '/') reply.send(String(proc.vars.n ?? 0));
      if (proc.vars.n === undefined) {
        await gate.promise; // still the request's process after its reply went out
        proc.vars.n = 1;
      }
      inFlight--;
      return reply;
    });
    await app.ready();
    const server = await listen(app.server, () => app.close());
    try {
      await expectHeldWhileTheHandlerGoesOn(server.url, clock, errors, gate, () => maxInFlight);
    } finally {
      gate.resolve();
      await server.close();
    }
  });
});

// A download its client cancels is no failure of the application: `await pipeline(source, res)` rejects
// with ERR_STREAM_PREMATURE_CLOSE once the response is gone, as readBody does when a client leaves.
for (const framework of ['node:http', 'Express', 'Fastify'] as const) {
  test(`${framework}, a download its client cancels (pipeline rejects, premature close): nothing reported as the handler's failure, the session served again at once`, { timeout: 20_000 }, async () => {
    await withEngine(async (engine, _clock, errors) => {
      const outcomes: string[] = [];
      const download = async (res: http.ServerResponse): Promise<void> => {
        let chunks = 0;
        const source = new Readable({ read() { setTimeout(() => this.push(chunks++ < 1_000 ? 'x'.repeat(1_024) : null), 2); } });
        res.setHeader('content-type', 'application/octet-stream');
        try {
          await pipeline(source, res);
          outcomes.push('done');
        } catch (error) {
          outcomes.push(String((error as NodeJS.ErrnoException).code));
          throw error; // as an application that lets it escape
        }
      };
      let running: { url: string; close(): Promise<void> };
      if (framework === 'node:http') {
        running = await startServer(engine, async (req: http.IncomingMessage, res: http.ServerResponse) => {
          if (req.url === '/download') return download(res);
          res.end('ok');
        });
      } else if (framework === 'Express') {
        const app = express();
        app.use(sessions(engine));
        app.get('/', (_req, res) => { res.send('ok'); });
        app.get('/download', async (_req, res) => { await download(res); });
        running = await listen(http.createServer(app));
      } else {
        const app = Fastify();
        await app.register(fastifySessions, { engine });
        app.get('/', async () => 'ok');
        app.get('/download', async (_req, reply) => { await download(reply.raw); return reply; });
        await app.ready();
        running = await listen(app.server, () => app.close());
      }
      try {
        const cookie = `4DSID=${sessionIdOf(await request(running.url))}`;
        await new Promise<void>((resolve) => {
          const req = http.get(`${running.url}/download`, { headers: { cookie }, agent: false }, (res) => {
            res.once('data', () => { req.destroy(); resolve(); }); // cancelled after the first bytes
          });
          req.on('error', () => {});
        });
        const answered = await waitFor(track(request(running.url, { cookie })));
        assert.equal(answered.status, 200);
        assert.deepEqual(outcomes, ['ERR_STREAM_PREMATURE_CLOSE']);
        assert.deepEqual(errors.map((e) => `${e.code} ${String((e.cause as { code?: string } | undefined)?.code)} ${String((e.cause as Error | undefined)?.message)}`), [], 'a cancelled download is not a failure');
      } finally {
        await running.close();
      }
    });
  });
}

test('Fastify, a request whose client left while it waited for its busy process: its handler, run when the process comes free, keeps it until it settles, past closeTimeoutMs (the next request waits: no overlap)', { timeout: 20_000 }, async () => {
  await withEngine(async (engine, clock) => {
    const gates: Array<() => void> = [];
    const started: string[] = [];
    let running = 0;
    let maxRunning = 0;
    const app = Fastify();
    await app.register(fastifySessions, { engine });
    app.get('/', async () => 'ok');
    app.get('/work', async (req) => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      started.push(String(req.id));
      await new Promise<void>((resolve) => gates.push(resolve));
      running--;
      return 'done';
    });
    await app.ready();
    const server = await listen(app.server, () => app.close());
    try {
      const cookie = `4DSID=${sessionIdOf(await request(server.url))}`;
      const first = track(request(server.url, { path: '/work', cookie }));
      await until(() => started.length === 1, 'the first handler runs');
      const leaving = http.request(`${server.url}/work`, { headers: { cookie }, agent: false });
      leaving.on('error', () => {});
      leaving.end();
      await until(() => engine.stats().queuedRequests === 1, 'the second request waits');
      leaving.destroy(); // its client leaves while it waits
      await new Promise((resolve) => setTimeout(resolve, 50));
      gates.shift()!();
      await waitFor(first);
      await until(() => started.length === 2, 'its handler runs'); // Fastify runs it anyway
      clock.advance(CLOSE_TIMEOUT_MS); // the handler still runs
      const third = track(request(server.url, { path: '/work', cookie }));
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(started.length, 2, 'the next request waits for the running handler');
      assert.equal(maxRunning, 1);
      gates.shift()!();
      await until(() => started.length === 3, 'the third runs after it');
      gates.shift()!();
      await waitFor(third);
      assert.equal(maxRunning, 1, 'never two handlers of one process at once');
    } finally {
      for (const gate of gates) gate();
      await server.close();
    }
  });
});

for (const kind of ['async-hijack', 'sync-hijack', 'sync-callback-never-ends', 'async-hijack-control-not-queued']) {
  test(`Fastify, ${kind}: its client left (while queued, or as it ran) and the handler, not seen to settle, never ends the response: released at closeTimeoutMs`, { timeout: 20_000 }, async () => {
    await withEngine(async (engine, clock) => {
      let release!: () => void;
      const gate = new Promise<void>((r) => { release = r; });
      let secondRuns = 0;
      const app = Fastify();
      await app.register(fastifySessions, { engine });
      app.get('/', async () => 'ok');
      app.get('/hold', async () => { await gate; return 'held'; });
      if (kind === 'async-hijack' || kind === 'async-hijack-control-not-queued') app.get('/work', async (_req, reply) => { secondRuns++; reply.hijack(); });
      else if (kind === 'sync-hijack') app.get('/work', (_req, reply) => { secondRuns++; reply.hijack(); });
      else app.get('/work', (_req, _reply) => { secondRuns++; /* answers later, never */ });
      await app.ready();
      const server = await listen(app.server, () => app.close());
      try {
        const cookie = `4DSID=${sessionIdOf(await request(server.url))}`;
        const leaving = http.request(`${server.url}/work`, { headers: { cookie }, agent: false });
        leaving.on('error', () => {});
        if (kind !== 'async-hijack-control-not-queued') {
          const first = track(request(server.url, { path: '/hold', cookie }));
          await until(() => engine.stats().busySessions === 1, 'hold runs');
          leaving.end();
          await until(() => engine.stats().queuedRequests === 1, 'queued');
          leaving.destroy();
          await new Promise((r) => setTimeout(r, 50));
          release();
          await waitFor(first);
        } else {
          release();
          leaving.end();
          await until(() => secondRuns === 1, 'runs');
          leaving.destroy();
          await new Promise((r) => setTimeout(r, 50));
        }
        await until(() => secondRuns === 1, 'work handler runs');
        await new Promise((r) => setTimeout(r, 50));
        clock.advance(CLOSE_TIMEOUT_MS + 1);
        await new Promise((r) => setTimeout(r, 50));
        const s = engine.sessions()[0];
        assert.equal(s?.busy, false, 'released at closeTimeoutMs');
      } finally {
        release();
        await server.close();
      }
    });
  });
}

test('Fastify, an async handler whose client leaves while it runs and which then hijacks its reply and ends the raw response: released at that end, not held', { timeout: 20_000 }, async () => {
  await withEngine(async (engine, _clock, errors) => {
    const gate = deferred<void>();
    let started = false;
    let ended = false;
    const app = Fastify();
    await app.register(fastifySessions, { engine });
    app.get('/', async () => 'ok');
    app.get('/late-hijack', async (_req, reply) => {
      started = true;
      await gate.promise;
      reply.hijack();
      reply.raw.end('x');
      ended = true;
    });
    await app.ready();
    const server = await listen(app.server, () => app.close());
    try {
      const cookie = `4DSID=${sessionIdOf(await request(server.url))}`;
      const leaving = http.request(`${server.url}/late-hijack`, { headers: { cookie }, agent: false });
      leaving.on('error', () => {});
      leaving.end();
      await until(() => started, 'its handler runs');
      leaving.destroy();
      await new Promise((resolve) => setTimeout(resolve, 50));
      gate.resolve();
      await until(() => ended, 'it ended the raw response');
      const answered = await waitFor(track(request(server.url, { cookie })));
      assert.equal(answered.status, 200, 'served, no clock moved');
      assert.deepEqual(errors.map((e) => e.code), [], 'nothing held too long');
    } finally {
      gate.resolve();
      await server.close();
    }
  });
});

test('Fastify, a synchronous handler that sends its reply later from a callback, its client gone before: the next request of the session waits until it does (no overlap)', async () => {
  await withEngine(async (engine, _clock, errors) => {
    const probe = newProbe();
    const app = Fastify();
    await app.register(fastifySessions, { engine });
    app.get('/*', (req, reply) => {
      probe.inFlight++;
      probe.maxInFlight = Math.max(probe.maxInFlight, probe.inFlight);
      const proc = req.proc as WebProcess<Vars>;
      if (req.url === '/slow') {
        reply.raw.on('close', () => probe.left.resolve());
        probe.started.resolve();
        void probe.finish.promise.then(() => {
          proc.vars.n = 99; // still the request's process
          probe.inFlight--;
          reply.send('late');
        });
        return;
      }
      probe.inFlight--;
      reply.send(String(proc.vars.n ?? 0));
    });
    await app.ready();
    const server = await listen(app.server, () => app.close());
    try {
      await expectNextWaitsForTheCallback(server.url, probe, errors);
    } finally {
      probe.finish.resolve();
      await server.close();
    }
  });
});

// Fastify reports a request's failure once: the errors after a reported failure (or a stream its client
// cut) are its echoes. A 4xx error is an answer, so a genuine failure after it is still reported.
for (const [name, setup] of Object.entries({
  'an onSend hook that throws after the handler threw a 404': (app: ReturnType<typeof Fastify>) => {
    app.addHook('onSend', async (_req: FastifyRequest, reply: FastifyReply, payload: unknown) => {
      if (reply.statusCode === 404) throw new Error('boom in onSend');
      return payload;
    });
    app.get('/x', async () => { throw Object.assign(new Error('nope'), { statusCode: 404 }); });
  },
  'a handler that throws (the control)': (app: ReturnType<typeof Fastify>) => {
    app.get('/x', async () => { throw new Error('boom in onSend'); });
  },
})) {
  test(`Fastify, ${name}: the failure is reported once`, { timeout: 10_000 }, async () => {
    await withEngine(async (engine, _clock, errors) => {
      const app = Fastify();
      await app.register(fastifySessions, { engine });
      setup(app);
      await app.ready();
      const server = await listen(app.server, () => app.close());
      try {
        await request(server.url, { path: '/x' });
        assert.deepEqual(errors.map((e) => [e.code, (e.cause as Error | undefined)?.message]), [['ERR_SESSION_HANDLER_FAILED', 'boom in onSend']]);
      } finally {
        await server.close();
      }
    });
  });
}
