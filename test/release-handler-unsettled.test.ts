// Handlers the adapter sees settle (a node:http handler returning a promise, Hono's middleware chain)
// whose client leaves while they run: the process stays theirs until they settle, however long, since
// requests of one process never overlap (DESIGN.md §1, invariant 7); one still running closeTimeoutMs
// after its response was cut is reported. A response that finished is no cut: nothing reported then.
import { test } from 'node:test';
import type * as http from 'node:http';
import { createAdaptorServer } from '@hono/node-server';
import { Hono } from 'hono';
import Fastify from 'fastify';
import { sessions as fastifySessions } from '../src/adapters/fastify/index.js';
import type { WebProcess } from '../src/index.js';
import { sessions, type SessionsEnv } from '../src/adapters/hono/index.js';
import { listen } from './contract/app.js';
import { deferred, startServer } from './helpers.js';
import { expectHeldUntilTheHandlerSettles, expectHeldWhileTheHandlerGoesOn, newProbe, withEngine, type Probe, type Vars } from './release-support.js';

/** `/open` writes part of its response and its promise settles only when `probe.finish` resolves; others answer the vars now. */
async function unsettledHandler(probe: Probe, url: string | undefined, res: http.ServerResponse, proc: WebProcess<Vars>): Promise<string | undefined> {
  if (url !== '/open') return String(proc.vars.n ?? 0);
  res.on('close', () => probe.left.resolve());
  probe.started.resolve();
  await probe.finish.promise;
  return undefined;
}

test('node:http, an async handler that outlives its client: its process stays held past closeTimeoutMs until it settles (no overlap), reported once, the session served after', async () => {
  await withEngine(async (engine, clock, errors) => {
    const probe = newProbe();
    const server = await startServer(engine, async (req: http.IncomingMessage, res: http.ServerResponse, proc: WebProcess<Vars>) => {
      if (req.url === '/open') res.write('partial');
      res.end(await unsettledHandler(probe, req.url, res, proc));
    });
    try {
      await expectHeldUntilTheHandlerSettles(server.url, engine, clock, errors, probe);
    } finally {
      await server.close();
    }
  });
});

test('Hono, a handler that outlives its client: its process stays held past closeTimeoutMs until it settles (no overlap), reported once, the session served after', async () => {
  await withEngine(async (engine, clock, errors) => {
    const probe = newProbe();
    const app = new Hono<SessionsEnv<Vars> & { Bindings: { outgoing: http.ServerResponse } }>();
    app.use(sessions(engine));
    app.get('*', async (c) => c.text((await unsettledHandler(probe, new URL(c.req.url).pathname, c.env.outgoing, c.get('proc'))) ?? ''));
    const server = await listen(createAdaptorServer({ fetch: app.fetch }) as http.Server);
    try {
      await expectHeldUntilTheHandlerSettles(server.url, engine, clock, errors, probe);
    } finally {
      await server.close();
    }
  });
});

test('Fastify, an async handler that outlives its client: its process stays held past closeTimeoutMs until it settles (no overlap), reported once, the session served after', async () => {
  await withEngine(async (engine, clock, errors) => {
    const probe = newProbe();
    const app = Fastify();
    await app.register(fastifySessions, { engine });
    app.get('/*', async (req, reply) => {
      if (req.url === '/open') reply.raw.write('partial');
      const body = await unsettledHandler(probe, req.url, reply.raw, req.proc as WebProcess<Vars>);
      if (req.url === '/open') reply.raw.end();
      return body;
    });
    await app.ready();
    const server = await listen(app.server, () => app.close());
    try {
      await expectHeldUntilTheHandlerSettles(server.url, engine, clock, errors, probe);
    } finally {
      probe.finish.resolve();
      await server.close();
    }
  });
});

test('node:http, an async handler that goes on after ending its response: held until it settles, however long, with no deadline (its response finished: nobody left)', async () => {
  await withEngine(async (engine, clock, errors) => {
    const gate = deferred<void>();
    let inFlight = 0;
    let maxInFlight = 0;
    const server = await startServer(engine, async (_req: http.IncomingMessage, res: http.ServerResponse, proc: WebProcess<Vars>) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      res.end(String(proc.vars.n ?? 0));
      if (proc.vars.n === undefined) {
        await gate.promise; // still the request's process after its response went out
        proc.vars.n = 1;
      }
      inFlight--;
    });
    try {
      await expectHeldWhileTheHandlerGoesOn(server.url, clock, errors, gate, () => maxInFlight);
    } finally {
      gate.resolve();
      await server.close();
    }
  });
});
