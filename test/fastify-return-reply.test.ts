// Fastify's idiom for an async handler that sends later, from a callback: `return reply`.
import { test } from 'node:test';
import Fastify from 'fastify';
import type { WebProcess } from '../src/index.js';
import { sessions as fastifySessions } from '../src/adapters/fastify/index.js';
import { listen } from './contract/app.js';
import { expectNextWaitsForTheCallback, newProbe, withEngine, type Vars } from './release-support.js';

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
