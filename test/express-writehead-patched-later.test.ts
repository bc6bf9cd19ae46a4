// An instrumentation that wraps http.ServerResponse.prototype.writeHead after the app's first request
// (an APM agent loaded late, a test spy): Express responses with sessions() still go through it, as
// end() and destroy() do (app-end.ts, appEndSeenOn) and as they do without sessions().
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import express from 'express';
import express4 from 'express4';
import { ManualClock, SessionEngine } from '../src/index.js';
import { sessions as expressSessions } from '../src/adapters/express/index.js';
import { listen } from './contract/app.js';
import { request, sessionIdOf } from './helpers.js';

for (const [name, framework] of [['Express 5', express], ['Express 4', express4]] as const) {
  test(`${name}: a writeHead wrapper put on http.ServerResponse.prototype after the first request still runs, and the cookie goes out once`, { timeout: 10_000 }, async () => {
    const engine = new SessionEngine({ clock: new ManualClock() });
    const app = (framework as typeof express)();
    app.use(expressSessions(engine));
    app.get('/', (req, res) => { res.send(req.proc.sessionId); });
    const server = await listen(http.createServer(app));
    const original = http.ServerResponse.prototype.writeHead;
    try {
      const id = sessionIdOf(await request(server.url));
      http.ServerResponse.prototype.writeHead = function (this: http.ServerResponse, ...args: unknown[]) {
        this.setHeader('x-instrumented', '1');
        return (original as (...a: unknown[]) => http.ServerResponse).apply(this, args);
      } as typeof original;
      const later = await request(server.url, { cookie: `4DSID=${id}` });
      assert.equal(later.headers['x-instrumented'], '1', 'the wrapper installed later is called');
      assert.deepEqual(later.setCookies.filter((c) => c.startsWith('4DSID=')).length, 1);
      assert.equal(sessionIdOf(later), id);
    } finally {
      http.ServerResponse.prototype.writeHead = original;
      await engine.stop();
      await server.close();
    }
  });
}
