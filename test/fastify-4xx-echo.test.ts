// Fastify: a handler that already sent the raw head and then throws a 4xx error: nothing failed, the 4xx
// answer just cannot be written; Fastify's echo of it (ERR_HTTP_HEADERS_SENT through onError again) is
// not a handler failure. A handler error without a status there is one (the control).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import Fastify from 'fastify';
import { sessions } from '../src/adapters/fastify/index.js';
import { listen } from './contract/app.js';
import { withEngine } from './release-support.js';
import { eventually, settle } from './helpers.js';

function get(url: string): Promise<string> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false }, (res) => {
      res.on('data', () => {});
      res.on('end', () => resolve('ended'));
      res.on('error', () => resolve('cut'));
      res.on('aborted', () => resolve('cut'));
    });
    req.on('error', () => resolve('cut'));
  });
}

for (const [name, status] of [['400 (an answer)', 400], ['no status (control: a failure)', undefined]] as const) {
  test(`fastify: raw head written then a ${name} thrown: reported errors`, { timeout: 10_000 }, async () => {
    await withEngine(async (engine, _clock, errors) => {
      const app = Fastify();
      await app.register(sessions, { engine });
      app.get('/partial', async (_request, reply) => {
        reply.raw.writeHead(200, { 'content-type': 'text/plain' });
        throw Object.assign(new Error('bad input'), status === undefined ? {} : { statusCode: status });
      });
      await app.ready();
      const server = await listen(app.server, () => app.close());
      try {
        await get(`${server.url}/partial`);
        // Its process released (after every hook of the request ran), then a few turns for a late echo.
        assert.ok(await eventually(() => engine.stats().busySessions === 0));
        await settle(20);
        const seen = errors.map((e) => [e.code, (e.cause as Error | undefined)?.message]);
        if (status === undefined) assert.deepEqual(seen, [['ERR_SESSION_HANDLER_FAILED', 'bad input']]);
        else assert.deepEqual(seen, [], 'a 4xx-only request must report nothing');
      } finally {
        await server.close();
      }
    });
  });
}
