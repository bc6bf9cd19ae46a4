// A handler's failure answered by the adapter (generic 500): the headers a handler set to tell a
// reverse proxy or a CDN what to do with ITS answer describe that answer too, and must not reach the
// error answer: X-Accel-Redirect / X-Sendfile make nginx / Apache serve the file the failed handler
// meant to send (in place of the 500), and CDN-Cache-Control / Surrogate-Control / X-Accel-Expires
// override the error answer's Cache-Control: no-store at the CDN or proxy cache (RFC 9213), so the 500
// would be cached for everyone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import express from 'express';
import { ManualClock, SessionEngine } from '../src/index.js';
import { sessions as expressSessions } from '../src/adapters/express/index.js';
import { listen } from './contract/app.js';
import { request, sessionIdOf } from './helpers.js';

const DIRECTIVES: Record<string, string> = {
  'x-accel-redirect': '/protected/report.csv',
  'x-sendfile': '/srv/files/report.csv',
  'cdn-cache-control': 'max-age=3600',
  'surrogate-control': 'max-age=3600',
  'x-accel-expires': '3600',
  'proxy-authenticate': 'Basic realm="proxy"',
};

test('Express: a handler\'s 500 drops the proxy/CDN directives the handler set for its unfinished answer', { timeout: 10_000 }, async () => {
  const engine = new SessionEngine({ clock: new ManualClock() });
  engine.on('error', () => {});
  const app = express();
  app.use(expressSessions(engine));
  app.get('/', (req, res) => { res.send(req.proc.sessionId); });
  app.get('/boom', (_req, res) => {
    for (const [n, v] of Object.entries(DIRECTIVES)) res.setHeader(n, v);
    throw new Error('secret detail');
  });
  const server = await listen(http.createServer(app));
  try {
    const id = sessionIdOf(await request(server.url));
    const failed = await request(server.url, { path: '/boom', cookie: `4DSID=${id}` });
    assert.equal(failed.status, 500);
    assert.equal(failed.headers['cache-control'], 'no-store');
    const left = Object.keys(DIRECTIVES).filter((n) => failed.headers[n] !== undefined);
    assert.deepEqual(left, [], `directives of the failed answer reached the 500: ${left.join(', ')}`);
  } finally {
    await engine.stop();
    await server.close();
  }
});
