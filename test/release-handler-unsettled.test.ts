// Handlers the adapter sees settle (a node:http handler returning a promise, Hono's middleware chain)
// whose client leaves while they run: the process stays theirs until they settle, and at the latest
// closeTimeoutMs after the response was cut it is released anyway and reported, so a promise that never
// settles cannot hold its session for ever. A response that finished is no cut: no deadline then.
import { test } from 'node:test';
import type * as http from 'node:http';
import { createAdaptorServer } from '@hono/node-server';
import { Hono } from 'hono';
import type { WebProcess } from '../src/index.js';
import { sessions, type SessionsEnv } from '../src/adapters/hono/index.js';
import { listen } from './contract/app.js';
import { deferred, startServer } from './helpers.js';
import { expectHeldWhileTheHandlerGoesOn, expectReleasedAtTheDeadline, newProbe, withEngine, type Probe, type Vars } from './release-support.js';

const NEVER = new Promise<never>(() => {});

/** `/open` writes part of its response and its promise never settles; others answer the vars now. */
async function unsettledHandler(probe: Probe, url: string | undefined, res: http.ServerResponse, proc: WebProcess<Vars>): Promise<string | undefined> {
  if (url !== '/open') return String(proc.vars.n ?? 0);
  res.on('close', () => probe.left.resolve());
  probe.started.resolve();
  await NEVER;
  return undefined;
}

test('node:http, an async handler that never settles, its client gone: released after closeTimeoutMs and reported, the session served again', async () => {
  await withEngine(async (engine, clock, errors) => {
    const probe = newProbe();
    const server = await startServer(engine, async (req: http.IncomingMessage, res: http.ServerResponse, proc: WebProcess<Vars>) => {
      if (req.url === '/open') res.write('partial');
      res.end(await unsettledHandler(probe, req.url, res, proc));
    });
    try {
      await expectReleasedAtTheDeadline(server.url, engine, clock, errors, probe);
    } finally {
      await server.close();
    }
  });
});

test('Hono, a handler that never settles, its client gone: released after closeTimeoutMs and reported, the session served again', async () => {
  await withEngine(async (engine, clock, errors) => {
    const probe = newProbe();
    const app = new Hono<SessionsEnv<Vars> & { Bindings: { outgoing: http.ServerResponse } }>();
    app.use(sessions(engine));
    app.get('*', async (c) => c.text((await unsettledHandler(probe, new URL(c.req.url).pathname, c.env.outgoing, c.get('proc'))) ?? ''));
    const server = await listen(createAdaptorServer({ fetch: app.fetch }) as http.Server);
    try {
      await expectReleasedAtTheDeadline(server.url, engine, clock, errors, probe);
    } finally {
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
