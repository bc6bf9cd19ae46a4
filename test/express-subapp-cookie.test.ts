// A sub-app with sessions() of its own, mounted ahead of the parent's sessions(): one cookie.
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
  test(`${name}, a sub-app with sessions() mounted ahead of the parent's own sessions(): every response of the sub-app carries the session cookie once`, { timeout: 10_000 }, async () => {
    const engine = new SessionEngine({ clock: new ManualClock() });
    const app = (framework as typeof express)();
    const admin = (framework as typeof express)();
    admin.use(expressSessions(engine));
    admin.get('/', (req, res) => { res.send(req.proc.sessionId); });
    app.use('/admin', admin);
    app.use(expressSessions(engine)); // the rest of the app, after the mount point
    app.get('/', (req, res) => { res.send(req.proc.sessionId); });
    const server = await listen(http.createServer(app));
    try {
      const sessionCookies = (response: { setCookies: string[] }): string[] => response.setCookies.filter((c) => c.startsWith('4DSID='));
      assert.equal(sessionCookies(await request(server.url, { path: '/admin/' })).length, 1);
      assert.equal(sessionCookies(await request(server.url, { path: '/' })).length, 1);
      const first = await request(server.url, { path: '/admin/' });
      assert.equal(sessionCookies(first).length, 1, 'one session cookie after the parent has served a request');
      const id = sessionIdOf(first);
      const again = await request(server.url, { path: '/admin/', cookie: `4DSID=${id}` });
      assert.deepEqual([again.status, again.body], [200, id]);
      assert.equal(sessionCookies(again).length, 1);
    } finally {
      await engine.stop();
      await server.close();
    }
  });
}
