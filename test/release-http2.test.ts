// Hono on @hono/node-server over HTTP/2 (h2c): a stream the client cancels (RST_STREAM) while the handler
// runs. An Http2ServerResponse cut that way says writableFinished but not writableEnded, and its 'close'
// comes before the handler settles: the process must still go back when the handler settles, and at the
// latest closeTimeoutMs after the cut if it never does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { createAdaptorServer } from '@hono/node-server';
import { Hono } from 'hono';
import Fastify from 'fastify';
import { sessions as fastifySessions } from '../src/adapters/fastify/index.js';
import type { SessionEngine } from '../src/index.js';
import { sessions, type SessionsEnv } from '../src/adapters/hono/index.js';
import { readBody } from '../src/adapters/node/index.js';
import { deferred, settle } from './helpers.js';
import { track } from './engine-harness.js';
import { until } from './contract/harness.js';
import { CLOSE_TIMEOUT_MS, withEngine, type Vars } from './release-support.js';

interface H2Answer { status: number; body: string; sessionId: string | undefined }

/** One request on its own h2c connection; `cancel` resolves when the caller wants the stream reset. */
function h2(port: number, path: string, cookie?: string, cancel?: Promise<void>): Promise<H2Answer | 'cancelled'> {
  return new Promise((resolve, reject) => {
    const client = http2.connect(`http://127.0.0.1:${port}`);
    client.on('error', () => {}); // a reset of ours
    const stream = client.request({ ':path': path, ...(cookie === undefined ? {} : { cookie }) });
    let status = 0;
    let setCookie: string[] = [];
    let body = '';
    stream.on('response', (headers) => {
      status = Number(headers[':status']);
      const raw = headers['set-cookie'];
      setCookie = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw];
    });
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => { body += chunk; });
    stream.on('end', () => {
      client.close();
      resolve({ status, body, sessionId: /4DSID=([0-9a-f-]{36})/.exec(setCookie.join(';'))?.[1] });
    });
    stream.on('error', reject);
    void cancel?.then(() => {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      client.close();
      resolve('cancelled');
    });
    stream.end();
  });
}

/** The answer, if it comes within a bounded number of event-loop turns (a process held for ever fails here). */
async function answeredSoon<T>(pending: Promise<T>): Promise<T> {
  const tracked = track(pending);
  for (let i = 0; i < 2_000 && !tracked.settled; i++) await settle(1);
  assert.ok(tracked.settled, 'answered');
  if (tracked.error !== undefined) throw tracked.error;
  return tracked.value as T;
}

async function withH2Hono(engine: SessionEngine<Vars>, hold: () => Promise<void>, body: (port: number, closed: () => boolean) => Promise<void>): Promise<void> {
  let closed = false;
  const app = new Hono<SessionsEnv<Vars> & { Bindings: { outgoing: http2.Http2ServerResponse } }>();
  app.use(sessions(engine));
  app.get('/hold', async (c) => {
    c.env.outgoing.on('close', () => { closed = true; });
    await hold();
    return c.text('held');
  });
  app.get('/', (c) => {
    const vars = c.get('proc').vars;
    vars.n = (vars.n ?? 0) + 1;
    return c.text(String(vars.n));
  });
  const server = createAdaptorServer({ fetch: app.fetch, createServer: http2.createServer }) as http2.Http2Server;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    await body((server.address() as AddressInfo).port, () => closed);
  } finally {
    server.close();
  }
}

test('Hono over HTTP/2, a stream cancelled while its handler runs, the handler then settling: the process goes back at once, nothing reported', { timeout: 10_000 }, async () => {
  await withEngine(async (engine, _clock, errors) => {
    const gate = deferred<void>();
    const started = deferred<void>();
    await withH2Hono(engine, async () => { started.resolve(); await gate.promise; }, async (port, closed) => {
      const first = await h2(port, '/');
      assert.ok(first !== 'cancelled' && first.sessionId !== undefined);
      const cookie = `4DSID=${first.sessionId}`;
      assert.equal(await h2(port, '/hold', cookie, started.promise.then(() => settle(2))), 'cancelled');
      await until(closed, 'the server saw the reset');
      gate.resolve();
      await settle(20);
      assert.equal(engine.sessions().find((s) => s.id === first.sessionId)?.busy, false, 'released when the handler settled');
      const next = await answeredSoon(h2(port, '/', cookie));
      assert.ok(next !== 'cancelled');
      assert.deepEqual([next.status, next.body], [200, '2']);
      assert.deepEqual(errors, []);
    });
  });
});

test('Hono over HTTP/2, a stream cancelled while its handler runs, the handler going on: the process stays held past closeTimeoutMs (reported then) until the handler settles, then the session is served', { timeout: 10_000 }, async () => {
  await withEngine(async (engine, clock, errors) => {
    const started = deferred<void>();
    const finish = deferred<void>();
    await withH2Hono(engine, async () => { started.resolve(); await finish.promise; }, async (port, closed) => {
      const first = await h2(port, '/');
      assert.ok(first !== 'cancelled' && first.sessionId !== undefined);
      const id = first.sessionId;
      assert.equal(await h2(port, '/hold', `4DSID=${id}`, started.promise.then(() => settle(2))), 'cancelled');
      await until(closed, 'the server saw the reset');
      await settle(20);
      assert.equal(engine.sessions().find((s) => s.id === id)?.busy, true, 'held while the handler may use the process');
      clock.advance(CLOSE_TIMEOUT_MS);
      await settle(20);
      assert.deepEqual(errors.map((e) => [e.code, e.sessionId]), [['ERR_SESSION_DRAIN_TIMEOUT', id]], 'reported at the deadline');
      assert.equal(engine.sessions().find((s) => s.id === id)?.busy, true, 'still held: requests of one process never overlap');
      finish.resolve();
      const next = await answeredSoon(h2(port, '/', `4DSID=${id}`));
      assert.ok(next !== 'cancelled');
      assert.deepEqual([next.status, next.body, next.sessionId], [200, '2', id]);
    });
  });
});

/**
 * A session's `/hold` runs (until `gate` opens) while a POST of it announcing 10 bytes, `sent` of them
 * written (undefined: a POST without a body), waits for the process; its stream is then reset, and
 * `/hold` answers. Resolves the session id.
 */
async function postQueuedThenReset(port: number, engine: SessionEngine<Vars>, gate: ReturnType<typeof deferred<void>>, sent: string | undefined): Promise<string> {
  const first = await h2(port, '/');
  assert.ok(first !== 'cancelled');
  const id = first.body;
  const held = h2(port, '/hold', `4DSID=${id}`);
  await until(() => engine.sessions()[0]?.busy === true, '/hold runs');
  const client = http2.connect(`http://127.0.0.1:${port}`);
  client.on('error', () => {});
  const headers = { ':path': '/form', ':method': 'POST', cookie: `4DSID=${id}`, ...(sent === undefined ? {} : { 'content-type': 'text/plain', 'content-length': '10' }) };
  const post = client.request(headers, { endStream: sent === undefined });
  post.on('error', () => {});
  if (sent?.length === 10) post.end(sent);
  else if (sent !== undefined) post.write(sent);
  await until(() => engine.sessions()[0]?.queuedRequests === 1, 'the POST waits for the process');
  post.close(http2.constants.NGHTTP2_CANCEL);
  client.close();
  await settle(20);
  gate.resolve();
  assert.ok((await held) !== 'cancelled');
  return id;
}

test('Fastify over HTTP/2, a request whose stream the client resets while it waits for its process: released when its turn comes, nothing reported', { timeout: 10_000 }, async () => {
  await withEngine(async (engine, _clock, errors) => {
    const gate = deferred<void>();
    const app = Fastify({ http2: true });
    await app.register(fastifySessions, { engine });
    app.get('/hold', async () => { await gate.promise; return 'held'; });
    app.post('/form', async () => 'ok');
    app.get('/', async (request) => String(request.proc.sessionId));
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (app.server.address() as AddressInfo).port;
    try {
      const id = await postQueuedThenReset(port, engine, gate, '0123456789');
      await until(() => engine.stats().busySessions === 0, 'released at its turn, no clock moved');
      assert.deepEqual(errors, [], 'no drain timeout');
      const next = await answeredSoon(h2(port, '/', `4DSID=${id}`));
      assert.ok(next !== 'cancelled' && next.body === id, 'the session serves again');
    } finally {
      gate.resolve();
      await app.close();
    }
  });
});

for (const [what, sent, expected] of [
  ['its body unfinished: readBody rejects when its turn comes (it resolved an empty body)', '012', /^rejected: request body aborted/],
  ['without a body: readBody resolves it empty when its turn comes, as over HTTP/1.1', undefined, /^read 0 bytes$/],
] as const) test(`HTTP/2, a POST whose stream is reset while it waits for its process, ${what}`, { timeout: 10_000 }, async () => {
  await withEngine(async (engine) => {
    const gate = deferred<void>();
    const outcomes: string[] = [];
    const app = new Hono<SessionsEnv<Vars> & { Bindings: { incoming: http2.Http2ServerRequest } }>();
    app.use(sessions(engine));
    app.get('/hold', async (c) => { await gate.promise; return c.text('held'); });
    app.post('/form', async (c) => {
      const read = await readBody(c.env.incoming as never).then((body) => `read ${body.length} bytes`, (error: Error) => `rejected: ${error.message}`);
      outcomes.push(read);
      return c.text(read);
    });
    app.get('/', (c) => c.text(c.get('proc').sessionId));
    const server = createAdaptorServer({ fetch: app.fetch, createServer: http2.createServer }) as http2.Http2Server;
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as AddressInfo).port;
    try {
      await postQueuedThenReset(port, engine, gate, sent);
      await until(() => outcomes.length === 1, 'the POST handler ran');
      assert.match(outcomes[0]!, expected);
    } finally {
      gate.resolve();
      server.close();
    }
  });
});
