// Fastify, a handler that fails after its reply was sent: Fastify runs no onError hook then (it only
// logs), and the failure must still be reported on the engine's 'error' event as in the other adapters.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Fastify from 'fastify';
import { ManualClock } from '../src/index.js';
import { sessions as fastifySessions } from '../src/adapters/fastify/index.js';
import { listen } from './contract/app.js';
import { engineWithErrors, request } from './helpers.js';
import { until } from './contract/harness.js';

const GUARD = { timeout: 20_000 };

for (const when of ['synchronously', 'after an await'] as const) {
  test(`Fastify, a handler that fails ${when} after its reply was sent: the failure is reported on 'error' (as node:http and Express report it)`, GUARD, async () => {
    const { engine, errors } = engineWithErrors({ clock: new ManualClock() });
    const app = Fastify();
    await app.register(fastifySessions, { engine });
    app.get('/', when === 'synchronously'
      ? (_req, reply) => { reply.send('done'); throw new Error('post-response work failed'); }
      : async (_req, reply) => { reply.send('done'); await null; throw new Error('post-response work failed'); });
    await app.ready();
    const server = await listen(app.server, () => app.close());
    try {
      const response = await request(server.url);
      assert.deepEqual([response.status, response.body], [200, 'done']);
      await until(() => engine.stats().busySessions === 0, 'the process is given back');
      assert.deepEqual(errors.map((e) => [e.code, (e.cause as Error | undefined)?.message]), [['ERR_SESSION_HANDLER_FAILED', 'post-response work failed']]);
    } finally {
      await engine.stop();
      await server.close();
    }
  });
}
