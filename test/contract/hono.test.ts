// The contract against the Hono middleware on @hono/node-server (app.use(sessions(engine)),
// c.get('proc')), then what is Hono's own: HTTPException answers, app.onError, other runtimes.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type * as http from 'node:http';
import { createAdaptorServer } from '@hono/node-server';
import { Hono } from 'hono';
import { HTTPException } from 'hono/http-exception';
import { ManualClock, SessionEngine, type SessionError } from '../../src/index.js';
import { sessions } from '../../src/adapters/hono/index.js';
import { request } from '../helpers.js';
import { listen, type ContractServer } from './app.js';
import { GUARD } from './harness.js';
import { contractSuite } from './suite.js';

contractSuite('hono', (engine, app) => {
  const server = new Hono();
  server.use(sessions(engine));
  server.all('*', async (c) => {
    const answer = await app.handle({ path: c.req.path, proc: c.get('proc'), body: await c.req.text() });
    for (const cookie of answer.cookies ?? []) c.header('Set-Cookie', cookie, { append: true });
    return c.text(answer.body);
  });
  return listen(createAdaptorServer({ fetch: server.fetch }) as http.Server);
});

describe('hono adapter: the framework idiom', () => {
  async function withHono(build: (app: Hono) => void, body: (server: ContractServer, errors: SessionError[]) => Promise<void>): Promise<void> {
    const engine = new SessionEngine({ clock: new ManualClock() });
    const errors: SessionError[] = [];
    engine.on('error', (error) => errors.push(error));
    const app = new Hono();
    app.use(sessions(engine));
    build(app);
    const server = await listen(createAdaptorServer({ fetch: app.fetch }) as http.Server);
    try {
      await body(server, errors);
    } finally {
      await engine.stop();
      await server.close();
    }
  }

  test('an HTTPException with a 4xx status is an answer: its own response, no reported failure', GUARD, async () => {
    await withHono((app) => {
      app.get('/private', () => { throw new HTTPException(401, { message: 'log in first' }); });
    }, async (server, errors) => {
      const response = await request(server.url, { path: '/private' });
      assert.deepEqual([response.status, response.body], [401, 'log in first']);
      assert.deepEqual(errors, []);
    });
  });

  test('with an app.onError of your own, yours answers and the failure is still reported', GUARD, async () => {
    await withHono((app) => {
      app.onError((_error, c) => c.text('sorry', 500));
      app.get('/fail', () => { throw new Error('inner secret'); });
    }, async (server, errors) => {
      const response = await request(server.url, { path: '/fail' });
      assert.deepEqual([response.status, response.body], [500, 'sorry']);
      assert.deepEqual(errors.map((e) => [e.code, (e.cause as Error).message]), [['ERR_SESSION_HANDLER_FAILED', 'inner secret']]);
    });
  });

  test('registered again on a sub-app mounted with app.route: the request keeps its one process, one session cookie, the session is served again', GUARD, async () => {
    const engine = new SessionEngine();
    const app = new Hono();
    app.use(sessions(engine));
    const admin = new Hono();
    admin.use(sessions(engine));
    admin.get('/', (c) => c.text(c.get('proc').sessionId));
    app.route('/admin', admin);
    const server = await listen(createAdaptorServer({ fetch: app.fetch }) as http.Server);
    try {
      const first = await request(server.url, { path: '/admin' });
      assert.equal(first.status, 200);
      const id = first.body;
      assert.equal(first.setCookies.filter((c) => c.startsWith('4DSID=')).length, 1);
      assert.ok(first.setCookies[0]?.startsWith(`4DSID=${id};`));
      assert.equal(engine.sessions().length, 1, 'no orphan session');
      const again = await request(server.url, { path: '/admin', cookie: `4DSID=${id}` });
      assert.deepEqual([again.status, again.body], [200, id]);
    } finally {
      await engine.stop();
      await server.close();
    }
  });

  test('outside @hono/node-server (app.request) the middleware says what it needs', async () => {
    const engine = new SessionEngine();
    const app = new Hono();
    let seen = '';
    app.onError((error, c) => { seen = error.message; return c.text('no', 500); });
    app.use(sessions(engine));
    app.get('/', (c) => c.text('unreachable'));
    assert.equal((await app.request('/')).status, 500);
    assert.match(seen, /needs @hono\/node-server/);
    await engine.stop();
  });
});
