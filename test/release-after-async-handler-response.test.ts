// node:http adapter, a handler that returns a promise which settles BEFORE its response is ended (the
// rest of its work goes on in a callback that ends the response): the process goes back once the
// response is over, not when the promise settles (http/release.ts: "after the response is over, never
// while the handler may still use it"), so the session's next request does not run meanwhile
// (invariant 7). The suite covered the client-left cases only, where the response is over already.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request, sessionCookie, startServer, engineWithErrors } from './helpers.js';

type Vars = { log: string[] };

test('an async handler whose promise settles before its response ends keeps its process until the response is over', { timeout: 10_000 }, async () => {
  const { engine, errors } = engineWithErrors<Vars>({ init: () => ({ log: [] }) });
  const server = await startServer(engine, async (req, res, proc) => {
    if (req.url === '/slow') {
      proc.vars.log.push('slow-start');
      setTimeout(() => {
        proc.vars.log.push('slow-end');
        res.end('slow');
      }, 150);
      return; // the promise settles now; the response ends in 150 ms
    }
    if (req.url === '/next') proc.vars.log.push('next');
    res.end(JSON.stringify(proc.vars.log));
  });
  try {
    const first = await request(server.url);
    const cookie = sessionCookie(first);
    assert.ok(cookie !== undefined);
    const slow = request(server.url, { path: '/slow', cookie });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const next = request(server.url, { path: '/next', cookie });
    assert.equal((await slow).body, 'slow');
    const log = JSON.parse((await next).body) as string[];
    assert.deepEqual(log, ['slow-start', 'slow-end', 'next'], 'the next request ran only after the slow response was over');
  } finally {
    await server.close();
    await engine.stop();
  }
  assert.deepEqual(errors, []);
});
