// When the client leaves before the application has ended its response: the process stays the
// request's until the application is done with it (its handler settles, or, where the adapter cannot see
// the handler, it ends the response), so requests of one process never overlap; and at the latest after
// closeTimeoutMs it is released anyway and reported (ERR_SESSION_DRAIN_TIMEOUT), so a response nobody
// ends (an event stream left open, a pipe cut off) cannot hold its session for ever. Time is the
// engine's ManualClock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import express from 'express';
import Fastify from 'fastify';
import { ManualClock, SessionEngine, type SessionError, type WebProcess } from '../src/index.js';
import { sessions } from '../src/adapters/express/index.js';
import { sessions as fastifySessions } from '../src/adapters/fastify/index.js';
import { listen } from './contract/app.js';
import { deferred, request, sessionIdOf, settle, startServer, type TestResponse } from './helpers.js';
import { track } from './engine-harness.js';

type Vars = { n?: number };
const CLOSE_TIMEOUT_MS = 30_000;

/** Sends a request and hangs up once `leave()` is called (the response, if any, is never read to its end). */
function requestThenLeave(url: string, path: string, cookie: string): { leave(): void } {
  const req = http.request(`${url}${path}`, { headers: { cookie } });
  req.on('error', () => {});
  req.end();
  return { leave: () => req.destroy() };
}

interface Probe {
  /** Handlers of the session running now, and the most seen at once. */
  inFlight: number;
  maxInFlight: number;
  readonly started: ReturnType<typeof deferred<void>>;
  /** The server saw the client of /slow leave. */
  readonly left: ReturnType<typeof deferred<void>>;
  /** /slow ends its response when this resolves (or never, for /open). */
  readonly finish: ReturnType<typeof deferred<void>>;
}

function newProbe(): Probe {
  return { inFlight: 0, maxInFlight: 0, started: deferred(), left: deferred(), finish: deferred() };
}

/**
 * The handler, callback style: `/slow` returns at once and ends its response when `finish` resolves,
 * still using the process then; `/open` writes part of a response and never ends it; others answer now.
 */
function callbackHandler(probe: Probe): (req: http.IncomingMessage, res: http.ServerResponse, proc: WebProcess<Vars>) => void {
  return (req, res, proc) => {
    probe.inFlight++;
    probe.maxInFlight = Math.max(probe.maxInFlight, probe.inFlight);
    if (req.url === '/slow' || req.url === '/open') {
      res.on('close', () => probe.left.resolve());
      probe.started.resolve();
      if (req.url === '/open') {
        res.write('partial');
        probe.inFlight--;
        return;
      }
      void probe.finish.promise.then(() => {
        proc.vars.n = 99; // still the request's process
        probe.inFlight--;
        res.end('late');
      });
      return;
    }
    probe.inFlight--;
    res.end(String(proc.vars.n ?? 0));
  };
}

async function withEngine(body: (engine: SessionEngine<Vars>, clock: ManualClock, errors: SessionError[]) => Promise<void>): Promise<void> {
  const clock = new ManualClock();
  const engine = new SessionEngine<Vars>({ clock, closeTimeoutMs: CLOSE_TIMEOUT_MS });
  const errors: SessionError[] = [];
  engine.on('error', (error) => errors.push(error));
  try {
    await body(engine, clock, errors);
  } finally {
    clock.advance(CLOSE_TIMEOUT_MS);
    await engine.stop();
  }
}

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

/**
 * `/slow`'s client leaves before its callback answers: the session's next request waits until the
 * callback has answered (it still uses the process), then sees what it left; never two at once.
 */
async function expectNextWaitsForTheCallback(url: string, probe: Probe, errors: SessionError[]): Promise<void> {
  const id = sessionIdOf(await request(url));
  const cookie = `4DSID=${id}`;
  const slow = requestThenLeave(url, '/slow', cookie);
  await probe.started.promise;
  const next = track(request(url, { cookie }));
  slow.leave();
  await probe.left.promise;
  await settle(20);
  assert.equal(next.settled, false, 'the next request waits for the callback that still uses the process');
  probe.finish.resolve();
  const answered = await waitFor(next);
  assert.deepEqual([answered.status, answered.body], [200, '99']);
  assert.equal(probe.maxInFlight, 1, 'requests of one process never overlapped');
  assert.deepEqual(errors, []);
}

async function expectReleasedAtTheDeadline(url: string, engine: SessionEngine<Vars>, clock: ManualClock, errors: SessionError[], probe: Probe): Promise<void> {
  const id = sessionIdOf(await request(url));
  const cookie = `4DSID=${id}`;
  const open = requestThenLeave(url, '/open', cookie);
  await probe.started.promise;
  open.leave();
  await probe.left.promise;
  const next = track(request(url, { cookie }));
  await settle(20);
  assert.equal(next.settled, false, 'held until the deadline');
  clock.advance(CLOSE_TIMEOUT_MS - 1);
  await settle(5);
  assert.equal(next.settled, false, 'not before it');
  clock.advance(1);
  const answered = await waitFor(next);
  assert.equal(answered.status, 200);
  assert.equal(sessionIdOf(answered), id, 'the same session');
  assert.deepEqual(errors.map((e) => [e.code, e.sessionId]), [['ERR_SESSION_DRAIN_TIMEOUT', id]]);
  assert.match(errors[0]!.message, /client left/);
  assert.equal(engine.sessions().find((s) => s.id === id)?.busy, false);
}

async function waitFor(pending: ReturnType<typeof track<TestResponse>>): Promise<TestResponse> {
  for (let i = 0; i < 2_000 && !pending.settled; i++) await settle(1);
  assert.ok(pending.settled, 'answered');
  if (pending.error !== undefined) throw pending.error;
  return pending.value!;
}

test('node:http, a handler that cuts its own response (res.destroy()) and returns: the process is free at once, nothing reported', async () => {
  await withEngine(async (engine, _clock, errors) => {
    const server = await startServer(engine, (req: http.IncomingMessage, res: http.ServerResponse, proc: WebProcess<Vars>) => {
      if (req.url === '/cut') {
        res.destroy();
        return;
      }
      res.end(String(proc.vars.n ?? 0));
    });
    try {
      const id = sessionIdOf(await request(server.url));
      await assert.rejects(request(server.url, { path: '/cut', cookie: `4DSID=${id}` }));
      const next = track(request(server.url, { cookie: `4DSID=${id}` }));
      const answered = await waitFor(next);
      assert.equal(sessionIdOf(answered), id);
      assert.deepEqual(errors, []);
    } finally {
      await server.close();
    }
  });
});

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
      const first = await request(server.url);
      const id = sessionIdOf(first);
      const next = track(request(server.url, { cookie: `4DSID=${id}` }));
      await settle(20);
      clock.advance(CLOSE_TIMEOUT_MS);
      await settle(20);
      assert.equal(next.settled, false, 'the next request waits for the handler, past closeTimeoutMs');
      assert.deepEqual(errors, [], 'no drain timeout: the response had finished');
      gate.resolve();
      const answered = await waitFor(next);
      assert.equal(answered.body, '1');
      assert.equal(maxInFlight, 1);
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
