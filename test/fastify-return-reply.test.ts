// Fastify's idiom for an async handler that sends later, from a callback: `return reply`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import Fastify, { type FastifyReply } from 'fastify';
import { ManualClock, SessionEngine, type SessionError, type WebProcess } from '../src/index.js';
import { sessions as fastifySessions } from '../src/adapters/fastify/index.js';
import { listen } from './contract/app.js';
import { expectNextWaitsForTheCallback, newProbe, withEngine, type Vars } from './release-support.js';
import { eventually } from './helpers.js';

test('Fastify, an async handler that sends its reply later from a callback and returns the reply (Fastify\'s documented idiom), its client gone before: the next request of the session waits until it does (no overlap)', { timeout: 10_000 }, async () => {
  await withEngine(async (engine, _clock, errors) => {
    const probe = newProbe();
    const app = Fastify();
    await app.register(fastifySessions, { engine });
    app.get('/*', async (req, reply) => {
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
        return reply; // "Don't forget to return reply" (Fastify's Reply docs, sending from a callback)
      }
      probe.inFlight--;
      return String(proc.vars.n ?? 0);
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

test('Fastify, an async handler that writes the head itself, goes on writing from a callback and returns the reply, its client gone before the callback ends: the next request of the session waits for it (no overlap)', { timeout: 10_000 }, async () => {
  await withEngine(async (engine, _clock, errors) => {
    const probe = newProbe();
    const app = Fastify();
    await app.register(fastifySessions, { engine });
    app.get('/*', async (req, reply) => {
      probe.inFlight++;
      probe.maxInFlight = Math.max(probe.maxInFlight, probe.inFlight);
      const proc = req.proc as WebProcess<Vars>;
      if (req.url === '/slow') {
        reply.raw.on('close', () => probe.left.resolve());
        reply.raw.writeHead(200, { 'content-type': 'text/plain' });
        reply.raw.write('started\n'); // the head has gone out: the rest comes from the callback
        probe.started.resolve();
        void probe.finish.promise.then(() => {
          proc.vars.n = 99; // still the request's process
          probe.inFlight--;
          reply.raw.end('late');
        });
        return reply; // "Don't forget to return reply" (Fastify's Reply docs, sending from a callback)
      }
      probe.inFlight--;
      return String(proc.vars.n ?? 0);
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


// `return reply.send(stream)` returns the reply too: the application has sent, and Fastify owns the
// response from then on. A web stream (a proxied fetch body, a Response) that its client leaves while
// Fastify waits for 'drain' is neither ended nor destroyed by Fastify (it only cancels the reader), so
// nothing the application could still do will end it: its process must go back when the response closes.
for (const [what, send] of [
  ['a ReadableStream', (reply: FastifyReply, body: ReadableStream<Uint8Array>) => reply.send(body)],
  ['a Response', (reply: FastifyReply, body: ReadableStream<Uint8Array>) => reply.send(new Response(body))],
] as const) {
  test(`Fastify, return reply.send(${what}) whose client stops reading and leaves: the process is given back at once, nothing reported`, { timeout: 15_000 }, async () => {
    const clock = new ManualClock();
    const engine = new SessionEngine({ clock });
    const errors: SessionError[] = [];
    engine.on('error', (error) => errors.push(error));
    const app = Fastify();
    await app.register(fastifySessions, { engine });
    let pulled = 0;
    app.get('/download', async (_req, reply) => {
      const chunk = new Uint8Array(64 * 1024).fill(97);
      const body = new ReadableStream<Uint8Array>({ pull(controller) { pulled++; controller.enqueue(chunk); } });
      reply.type('application/octet-stream');
      return send(reply, body);
    });
    await app.ready();
    const server = await listen(app.server, () => app.close());
    try {
      const client = http.get(`${server.url}/download`, { agent: false }, (res) => res.pause());
      client.on('error', () => {});
      // Held by backpressure: the stream stops being pulled (Fastify waits for 'drain').
      assert.ok(await eventually(() => pulled > 0, 5_000), 'the download started');
      let seen = -1;
      while (seen !== pulled) {
        seen = pulled;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      client.destroy();
      assert.ok(await eventually(() => engine.stats().busySessions === 0, 5_000), 'the process is given back when its client leaves (no closeTimeoutMs wait)');
      assert.deepEqual(errors.map((e) => e.code), [], 'nothing reported');
    } finally {
      clock.advance(60_000);
      await engine.stop();
      await server.close();
    }
  });
}
