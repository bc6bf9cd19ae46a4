// A middleware ahead of sessions() that wraps res.writeHead (on-headers: compression, morgan,
// express-session, response-time) on the app's very first request: that response carries the session
// cookie too. express-session is the real thing; the inline wrapper does what on-headers does for the others.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import express from 'express';
import express4 from 'express4';
import expressSession from 'express-session';
import { ManualClock, SessionEngine } from '../src/index.js';
import { sessions as expressSessions } from '../src/adapters/express/index.js';
import { listen } from './contract/app.js';
import { request, sessionIdOf } from './helpers.js';

const wrappers: Array<[string, () => express.RequestHandler]> = [
  // What on-headers does: the writeHead the response has now is called from a wrapper of its own.
  ['a writeHead wrapper', () => (_req, res, next) => {
    const writeHead = res.writeHead;
    res.writeHead = function (this: typeof res, ...args: unknown[]) { return (writeHead as (...a: unknown[]) => typeof res).apply(this, args); } as typeof res.writeHead;
    next();
  }],
  ['express-session', () => expressSession({ secret: 'test', resave: false, saveUninitialized: false })],
];

for (const [name, framework] of [['Express 5', express], ['Express 4', express4]] as const) {
  for (const [middleware, make] of wrappers) {
    test(`${name}, ${middleware} before sessions(): the app's first response carries the session cookie, and the browser keeps that session`, { timeout: 10_000 }, async () => {
      const engine = new SessionEngine({ clock: new ManualClock() });
      const app = (framework as typeof express)();
      app.use(make());
      app.use(expressSessions(engine));
      app.get('/', (req, res) => { res.send(req.proc.sessionId); });
      const server = await listen(http.createServer(app));
      try {
        const first = await request(server.url);
        assert.equal(first.setCookies.filter((c) => c.startsWith('4DSID=')).length, 1, `first response: ${JSON.stringify(first.setCookies)}`);
        assert.equal(sessionIdOf(first), first.body, 'the cookie names the session the request ran in');
        const again = await request(server.url, { cookie: `4DSID=${first.body}` });
        assert.deepEqual([again.body, engine.sessions().length], [first.body, 1], 'no orphan session');
      } finally {
        await engine.stop();
        await server.close();
      }
    });
  }
}
