import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SessionEngine } from '../src/index.js';
import { request, sessionCookie, startServer } from './helpers.js';

test('a returning browser keeps its session variables between requests', async () => {
  const engine = new SessionEngine<{ visits: number }>({ init: () => ({ visits: 0 }) });
  const server = await startServer(engine, (_req, res, proc) => { proc.vars.visits++; res.end(String(proc.vars.visits)); });
  try {
    const first = await request(server.url);
    const cookie = sessionCookie(first);
    assert.ok(cookie);
    const second = await request(server.url, { cookie });
    assert.equal(first.body, '1');
    assert.equal(second.body, '2');
  } finally {
    await engine.stop();
    await server.close();
  }
});
