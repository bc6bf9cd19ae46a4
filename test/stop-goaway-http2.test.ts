// A request refused because the engine stops gets 503 with Retry-After and, over HTTP/1.1,
// Connection: close, so the client's next request opens a new connection, which may reach another node
// (README, stop()). HTTP/2 has no Connection header (RFC 9113 §8.2.2) and a browser sends every request
// on one connection: without a GOAWAY, each of its requests during the drain is answered 503 on the
// same connection. The refusal closes the connection gracefully: the streams under way (the request
// being drained) still finish, and the client sees the GOAWAY. Hono (@hono/node-server) and Fastify
// (`http2: true`), h2c on loopback, both stores.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { createAdaptorServer } from '@hono/node-server';
import { Hono } from 'hono';
import Fastify from 'fastify';
import { ManualClock, SessionEngine } from '../src/index.js';
import { sessions as honoSessions } from '../src/adapters/hono/index.js';
import { sessions as fastifySessions } from '../src/adapters/fastify/index.js';
import { deferred } from './helpers.js';
import { until } from './contract/harness.js';
import { storeChoices } from './store-choices.js';

interface Answer { status: number; headers: http2.IncomingHttpHeaders; body: string }

function h2get(client: http2.ClientHttp2Session, path: string, cookie?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const stream = client.request({ ':path': path, ...(cookie === undefined ? {} : { cookie }) });
    let headers: http2.IncomingHttpHeaders = {};
    let body = '';
    stream.on('response', (h) => { headers = h; });
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => { body += chunk; });
    stream.on('end', () => resolve({ status: Number(headers[':status']), headers, body }));
    stream.on('error', reject);
    stream.end();
  });
}

type Server = { port: number; close(): Promise<void> };
type Start = (engine: SessionEngine, hold: () => Promise<void>) => Promise<Server>;

const servers: Array<[string, Start]> = [
  ['Hono', async (engine, hold) => {
    const app = new Hono();
    app.use(honoSessions(engine));
    app.get('/hold', async (c) => { await hold(); return c.text('held'); });
    app.get('/', (c) => c.text(c.get('proc').sessionId));
    const server = createAdaptorServer({ fetch: app.fetch, createServer: http2.createServer }) as http2.Http2Server;
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return { port: (server.address() as AddressInfo).port, close: async () => { server.close(); } };
  }],
  ['Fastify', async (engine, hold) => {
    const app = Fastify({ http2: true });
    await app.register(fastifySessions, { engine });
    app.get('/hold', async () => { await hold(); return 'held'; });
    app.get('/', async (request) => request.proc.sessionId);
    await app.listen({ port: 0, host: '127.0.0.1' });
    return { port: (app.server.address() as AddressInfo).port, close: () => app.close() };
  }],
];

for (const [name, start] of servers) for (const [storeName, choose] of storeChoices()) {
  test(`${name} over HTTP/2, ${storeName}: a request refused while the engine stops closes its connection gracefully (GOAWAY); the request being drained still gets its answer`, { timeout: 10_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const engine = new SessionEngine({ clock: new ManualClock(), ...choice.options });
    const gate = deferred<void>();
    const started = deferred<void>();
    const server = await start(engine, async () => { started.resolve(); await gate.promise; });
    const client = http2.connect(`http://127.0.0.1:${server.port}`);
    client.on('error', () => {});
    let goaway = false;
    client.once('goaway', () => { goaway = true; });
    try {
      const id = (await h2get(client, '/')).body;
      const held = h2get(client, '/hold', `4DSID=${id}`);
      await started.promise;
      const stopping = engine.stop();
      const refused = await h2get(client, '/');
      assert.equal(refused.status, 503);
      assert.equal(refused.headers['retry-after'], '1');
      assert.equal(refused.headers.connection, undefined);
      await until(() => goaway, 'the client was told to open a new connection (GOAWAY)');
      gate.resolve();
      const drained = await held;
      assert.equal(drained.status, 200, 'the stream under way finished');
      assert.equal(drained.body, 'held');
      await stopping;
    } finally {
      gate.resolve();
      client.destroy();
      await engine.stop();
      await server.close();
    }
  });
}
