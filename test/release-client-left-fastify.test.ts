// When the client leaves before the application has ended its response, on Fastify: async handlers that
// go on after their reply, requests whose client left while they waited, hijacked replies, replies sent
// later from a callback, failures after a cut. The rules are release-client-left.test.ts's: the process
// stays the request's until the application is done with it, and at the latest closeTimeoutMs after the
// client left it is released anyway and reported. Time is the engine's ManualClock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import type { WebProcess } from '../src/index.js';
import { sessions as fastifySessions } from '../src/adapters/fastify/index.js';
import { listen } from './contract/app.js';
import { deferred, request, sessionIdOf } from './helpers.js';
import { track } from './engine-harness.js';
import { CLOSE_TIMEOUT_MS, expectHeldWhileTheHandlerGoesOn, expectNextWaitsForTheCallback, newProbe, waitFor, withEngine, type Vars } from './release-support.js';
import { until } from './http-support.js';

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
