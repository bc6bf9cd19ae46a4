// The Fastify plugin registered on the root and again in a child scope (as Express's router or sub-app).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Fastify from 'fastify';
import { ManualClock, SessionEngine, type CloseReason } from '../src/index.js';
import { sessions as fastifySessions } from '../src/adapters/fastify/index.js';
import { listen } from './contract/app.js';
import { request, sessionIdOf } from './helpers.js';

test('Fastify, the plugin registered on the root and again in an encapsulated child scope: the app starts, the request keeps the one process it has (no wait behind itself), one session cookie; app.close() hooks each session once', { timeout: 10_000 }, async () => {
  const hooks: CloseReason[] = [];
  const engine = new SessionEngine({ clock: new ManualClock(), onClose: (_proc, reason) => { hooks.push(reason); } });
  const app = Fastify();
  await app.register(fastifySessions, { engine });
  await app.register(async (child) => {
    await child.register(fastifySessions, { engine });
    child.get('/x', async (req) => req.proc.sessionId);
  }, { prefix: '/api' });
  app.get('/', async (req) => req.proc.sessionId);
  await app.ready();
  const server = await listen(app.server, () => app.close());
  try {
    const first = await request(server.url, { path: '/api/x' });
    const id = sessionIdOf(first);
    assert.deepEqual([first.status, first.body], [200, id]);
    assert.equal(first.setCookies.filter((c) => c.startsWith('4DSID=')).length, 1);
    assert.equal(engine.sessions().length, 1, 'no second session');
    const again = await request(server.url, { path: '/api/x', cookie: `4DSID=${id}` });
    assert.deepEqual([again.status, again.body], [200, id]);
    assert.equal((await request(server.url, { cookie: `4DSID=${id}` })).body, id);
  } finally {
    await server.close();
    await engine.stop();
  }
  assert.deepEqual(hooks, ['shutdown']);
});
