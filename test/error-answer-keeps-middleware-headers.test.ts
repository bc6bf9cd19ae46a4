// A handler's failure answered by the adapter (generic 500): the headers middlewares set on the response
// around the handler (CORS, Vary, security headers) stay, as in the framework's own error answer; only
// what described the answer the handler did not finish goes (its Content-Disposition, its cookie).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import express from 'express';
import express4 from 'express4';
import Fastify, { type FastifyReply } from 'fastify';
import { ManualClock, SessionEngine } from '../src/index.js';
import { sessions as expressSessions } from '../src/adapters/express/index.js';
import { sessions as fastifySessions } from '../src/adapters/fastify/index.js';
import { listen } from './contract/app.js';
import { request, sessionIdOf, type TestResponse } from './helpers.js';

const ORIGIN = 'http://app.example';

/** What `cors({ origin, credentials: true })` and `helmet()` set before the route runs. */
function responseHeaders(set: (name: string, value: string) => void): void {
  set('access-control-allow-origin', ORIGIN);
  set('access-control-allow-credentials', 'true');
  set('vary', 'Origin');
  set('x-content-type-options', 'nosniff');
  set('strict-transport-security', 'max-age=31536000; includeSubDomains');
  set('content-security-policy', "default-src 'self'");
}

function assertKept(failed: TestResponse, id: string | undefined): void {
  assert.equal(failed.status, 500);
  assert.match(failed.body, /Internal Server Error/);
  assert.equal(sessionIdOf(failed), id, 'the session cookie, once');
  assert.equal(failed.setCookies.filter((c) => c.startsWith('4DSID=')).length, 1);
  assert.deepEqual(
    [failed.headers['access-control-allow-origin'], failed.headers['access-control-allow-credentials'], failed.headers.vary, failed.headers['x-content-type-options'], failed.headers['strict-transport-security'], failed.headers['content-security-policy']],
    [ORIGIN, 'true', 'Origin', 'nosniff', 'max-age=31536000; includeSubDomains', "default-src 'self'"],
    'the middlewares\' headers are the response\'s: a browser can read the 500 (CORS) and the page keeps its security headers',
  );
  assert.equal(failed.headers['content-disposition'], undefined, 'the failed answer\'s own headers go');
  assert.equal(failed.headers['cache-control'], 'no-store', 'the error answer is never cached');
  assert.equal(failed.setCookies.some((c) => c.startsWith('download=')), false, 'its cookie too');
}

for (const [name, framework] of [['Express 5', express], ['Express 4', express4]] as const) {
  for (const order of ['before', 'after'] as const) {
    test(`${name}, CORS and security-header middlewares ${order} sessions(): a handler's 500 keeps their headers`, { timeout: 10_000 }, async () => {
      const engine = new SessionEngine({ clock: new ManualClock() });
      engine.on('error', () => {});
      const app = (framework as typeof express)();
      const middleware: express.RequestHandler = (_req, res, next) => { responseHeaders((n, v) => res.setHeader(n, v)); next(); };
      if (order === 'before') app.use(middleware, expressSessions(engine));
      else app.use(expressSessions(engine), middleware);
      app.get('/', (req, res) => { res.send(req.proc.sessionId); });
      app.get('/boom', (_req, res) => {
        res.setHeader('content-disposition', 'attachment; filename="report.csv"');
        res.setHeader('cache-control', 'public, max-age=600');
        res.cookie('download', '1');
        throw new Error('secret detail');
      });
      const server = await listen(http.createServer(app));
      try {
        const id = sessionIdOf(await request(server.url, { headers: { origin: ORIGIN } }));
        assertKept(await request(server.url, { path: '/boom', cookie: `4DSID=${id}`, headers: { origin: ORIGIN } }), id);
      } finally {
        await engine.stop();
        await server.close();
      }
    });
  }
}

for (const order of ['before', 'after'] as const) {
  test(`Fastify, a CORS and security-header hook registered ${order} the plugin: a handler's 500 keeps their headers`, { timeout: 10_000 }, async () => {
    const engine = new SessionEngine({ clock: new ManualClock() });
    engine.on('error', () => {});
    const app = Fastify();
    const hook = (_request: unknown, reply: FastifyReply, done: () => void): void => { responseHeaders((n, v) => reply.header(n, v)); done(); };
    if (order === 'before') app.addHook('onRequest', hook);
    await app.register(fastifySessions, { engine });
    if (order === 'after') app.addHook('onRequest', hook);
    app.get('/', async (request) => request.proc.sessionId);
    app.get('/boom', async (_request, reply) => {
      reply.header('content-disposition', 'attachment; filename="report.csv"');
      reply.header('cache-control', 'public, max-age=600');
      reply.header('set-cookie', 'download=1');
      throw new Error('secret detail');
    });
    await app.ready();
    const server = await listen(app.server, () => app.close());
    try {
      const id = sessionIdOf(await request(server.url, { headers: { origin: ORIGIN } }));
      assertKept(await request(server.url, { path: '/boom', cookie: `4DSID=${id}`, headers: { origin: ORIGIN } }), id);
    } finally {
      await server.close();
    }
  });
}
