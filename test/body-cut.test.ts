// A request body its client cuts mid-way (it leaves after part of the body), read by the application
// itself rather than readBody: the stream rejects with Node's 'aborted' (ECONNRESET). That is the
// client's doing, as readBody's ERR_SESSION_BODY_ABORTED is: not reported as the handler's failure, and
// the session is served again at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as net from 'node:net';
import express from 'express';
import { Hono } from 'hono';
import { createAdaptorServer } from '@hono/node-server';
import { sessions } from '../src/adapters/express/index.js';
import { sessions as honoSessions } from '../src/adapters/hono/index.js';
import { listen, type ContractServer } from './contract/app.js';
import { eventually, request, sessionIdOf, startServer } from './helpers.js';
import { withEngine, type Vars } from './release-support.js';
import type { SessionEngine } from '../src/index.js';

/** Reads the whole request body as the application would, without readBody. */
async function bodyOf(req: http.IncomingMessage): Promise<string> {
  let body = '';
  for await (const chunk of req) body += String(chunk);
  return body;
}

const servers: Record<string, (engine: SessionEngine<Vars>, seen: unknown[]) => Promise<Pick<ContractServer, 'url' | 'close'>>> = {
  'node:http': async (engine, seen) => startServer(engine, async (req, res) => {
    if (req.method !== 'POST') return void res.end('ok');
    try {
      res.end(await bodyOf(req));
    } catch (error) {
      seen.push(error);
      throw error; // as an application that lets it escape
    }
  }),
  Express: async (engine, seen) => {
    const app = express();
    app.use(sessions(engine));
    app.get('/', (_req, res) => { res.send('ok'); });
    app.post('/', async (req, res) => {
      try {
        res.send(await bodyOf(req));
      } catch (error) {
        seen.push(error);
        throw error;
      }
    });
    return listen(http.createServer(app));
  },
  Hono: async (engine, seen) => {
    const app = new Hono();
    app.use(honoSessions(engine));
    app.get('/', (c) => c.text('ok'));
    app.post('/', async (c) => {
      try {
        return c.text(await c.req.text());
      } catch (error) {
        seen.push(error);
        throw error;
      }
    });
    return listen(createAdaptorServer({ fetch: app.fetch }) as http.Server);
  },
};

for (const [framework, start] of Object.entries(servers)) {
  test(`${framework}: a body its client cuts while the application reads it is not reported as the handler's failure, and the session is served again at once`, { timeout: 20_000 }, async () => {
    await withEngine(async (engine, _clock, errors) => {
      const seen: unknown[] = [];
      const running = await start(engine, seen);
      try {
        const id = sessionIdOf(await request(running.url));
        const { port } = new URL(running.url);
        const socket = net.connect(Number(port), '127.0.0.1');
        await new Promise((resolve) => socket.once('connect', resolve));
        socket.write(`POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: 4DSID=${id}\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nabc`);
        assert.ok(await eventually(() => engine.stats().busySessions === 1, 5_000), 'the request runs');
        socket.destroy();
        assert.ok(await eventually(() => seen.length > 0, 5_000), 'the application saw its read fail');
        const answered = await request(running.url, { cookie: `4DSID=${id}` });
        assert.equal(answered.status, 200);
        assert.equal(sessionIdOf(answered) ?? id, id, 'the same session');
        assert.deepEqual(errors.map((e) => `${e.code} ${String((e.cause as { code?: string } | undefined)?.code)}`), [], 'a body cut by its client is not a failure');
      } finally {
        await running.close();
      }
    });
  });
}
