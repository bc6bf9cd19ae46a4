// When the client leaves before the application has ended its response: the process stays the
// request's until the application is done with it (its handler settles, or, where the adapter cannot see
// the handler, it ends the response), so requests of one process never overlap; and at the latest after
// closeTimeoutMs it is released anyway and reported (ERR_SESSION_DRAIN_TIMEOUT), so a response nobody
// ends (an event stream left open, a pipe cut off) cannot hold its session for ever. Time is the
// engine's ManualClock.
// Fastify's own cases (async handlers going on after the reply, hijacks, replies sent later): release-
// client-left-fastify.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as net from 'node:net';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import express from 'express';
import Fastify from 'fastify';
import type { WebProcess } from '../src/index.js';
import { sessions } from '../src/adapters/express/index.js';
import { sessions as fastifySessions } from '../src/adapters/fastify/index.js';
import { listen } from './contract/app.js';
import { deferred, request, sessionIdOf, startServer } from './helpers.js';
import { track } from './engine-harness.js';
import { callbackHandler, expectNextWaitsForTheCallback, expectReleasedAtTheDeadline, newProbe, waitFor, withEngine, type Vars } from './release-support.js';

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

// An upload its client cuts mid-body is no failure of the application either: a body reader then fails
// with an error of its own making (multer's plain "Request aborted", busboy's "Unexpected end of form"),
// no code to know it by; the request's body never arrived whole and its client is gone. The same error
// while the client still waits for its answer is the application's failure, reported.
for (const framework of ['node:http', 'Express'] as const) {
  test(`${framework}, an upload its client cuts mid-body whose reader fails with a plain Error: not reported as the handler's failure; the same error with the client there is`, { timeout: 20_000 }, async () => {
    await withEngine(async (engine, _clock, errors) => {
      const outcomes: string[] = [];
      const receiving = deferred();
      const readUpload = (req: http.IncomingMessage): Promise<void> => new Promise<void>((resolve, reject) => {
        req.on('data', () => { receiving.resolve(); });
        req.once('end', () => (req.url === '/fails-anyway' ? reject(new Error('Unexpected end of form')) : resolve()));
        req.once('close', () => { if (!req.complete) reject(new Error('Request aborted')); });
      }).then(() => { outcomes.push('read'); }, (error: Error) => { outcomes.push(error.message); throw error; });
      let running: { url: string; close(): Promise<void> };
      if (framework === 'node:http') {
        running = await startServer(engine, async (req: http.IncomingMessage, res: http.ServerResponse) => {
          if (req.method === 'POST') await readUpload(req);
          res.end('ok');
        });
      } else {
        const app = express();
        app.use(sessions(engine));
        app.get('/', (_req, res) => { res.send('ok'); });
        app.post(['/upload', '/fails-anyway'], async (req, res, next) => { try { await readUpload(req); res.send('ok'); } catch (error) { next(error); } });
        running = await listen(http.createServer(app));
      }
      try {
        const cookie = `4DSID=${sessionIdOf(await request(running.url))}`;
        const { port } = new URL(running.url);
        const socket = net.connect(Number(port), '127.0.0.1');
        socket.on('error', () => {});
        await once(socket, 'connect');
        socket.write(`POST /upload HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\n`);
        await receiving.promise;
        socket.destroy(); // the client leaves mid-body
        const answered = await waitFor(track(request(running.url, { cookie })));
        assert.equal(answered.status, 200, 'the session is served again at once');
        assert.deepEqual(outcomes, ['Request aborted']);
        assert.deepEqual(errors.map((e) => e.code), [], 'an upload its client cut is not a failure');

        const failed = await request(running.url, { path: '/fails-anyway', method: 'POST', cookie, body: 'whole body' });
        assert.equal(failed.status, 500);
        assert.deepEqual(outcomes, ['Request aborted', 'Unexpected end of form']);
        assert.deepEqual(errors.map((e) => `${e.code} ${String((e.cause as Error | undefined)?.message)}`), ['ERR_SESSION_HANDLER_FAILED Unexpected end of form'], 'with its client there, the same kind of error is a failure');
      } finally {
        await running.close();
      }
    });
  });
}
