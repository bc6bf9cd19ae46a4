// The contract against the node:http adapter: createServer(engine, handler).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SessionEngine } from '../../src/index.js';
import { createServer, readBody } from '../../src/adapters/node/index.js';
import { request } from '../helpers.js';
import { listen } from './app.js';
import { GUARD, json, slowPost } from './harness.js';
import { contractSuite } from './suite.js';

contractSuite('node:http', (engine, app) => listen(createServer(engine, async (req, res, proc) => {
  const body = (await readBody(req)).toString('utf8');
  const answer = await app.handle({ path: new URL(req.url ?? '/', 'http://x').pathname, proc, body });
  if (answer.cookies !== undefined) res.setHeader('set-cookie', [...answer.cookies]);
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end(answer.body);
})));

describe('node:http adapter: beyond the contract', () => {
  test('a handler reading the body from stream events keeps the process current: a logout there closes at once', GUARD, async () => {
    const engine = new SessionEngine();
    const server = await listen(createServer(engine, (req, res, proc) => {
      if (req.method !== 'POST') return void res.end(proc.sessionId);
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => { body += chunk; });
      // The handler has returned; these callbacks run from the HTTP parser, where the process must still be current.
      req.on('end', () => {
        const sid = engine.currentSessionId();
        void engine.closeSession(proc.sessionId).then((closed) => res.end(JSON.stringify({ sid, closed, body })));
      });
    }));
    try {
      const id = (await request(server.url)).body;
      const busy = (): boolean => engine.sessions().some((s) => s.id === id && s.busy);
      assert.deepEqual(json(await slowPost(server.url, '/logout', 'bye', `4DSID=${id}`, busy)), { sid: id, closed: true, body: 'bye' });
    } finally {
      await engine.stop();
      await server.close();
    }
  });
});
