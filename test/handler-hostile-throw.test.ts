// A handler may throw anything: what it throws is read to tell an answer (a 4xx status) from a failure
// and a cut client from a crash. Reading it must not itself throw: a value whose `status` or `code`
// getter throws, or a revoked Proxy, crashed the server (an uncaught exception from a synchronous
// handler, an unhandled rejection from an async one) and left the request unanswered and its process
// taken. Expected: a generic 500, the failure reported, the session usable.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SessionError } from '../src/index.js';
import { engineWithErrors, request, sessionCookie } from './helpers.js';
import { withServer } from './http-support.js';

const HOSTILE: Record<string, () => unknown> = {
  'a revoked Proxy': () => {
    const revocable = Proxy.revocable({}, {});
    revocable.revoke();
    return revocable.proxy;
  },
  'an error whose status getter throws': () => Object.defineProperty(new Error('db password is hunter2'), 'status', { get() { throw new Error('status getter: hunter2'); } }),
  'an error whose code getter throws': () => Object.defineProperty(new Error('db password is hunter2'), 'code', { get() { throw new Error('code getter: hunter2'); } }),
};

for (const [what, make] of Object.entries(HOSTILE)) {
  for (const how of ['throws', 'rejects with'] as const) {
    test(`node:http: a handler that ${how} ${what} gets a generic 500, reported, and no crash`, { timeout: 5_000 }, async () => {
      const { engine, errors } = engineWithErrors<{ n: number }>({ init: () => ({ n: 0 }) });
      await withServer(engine, (req, res, proc) => {
        proc.vars.n++;
        if (req.url === '/fine') {
          res.end(String(proc.vars.n));
          return undefined;
        }
        if (how === 'throws') throw make();
        return Promise.reject(make());
      }, async (server) => {
        const failed = await request(server.url);
        assert.equal(failed.status, 500);
        assert.equal(failed.body, 'Internal Server Error\n');
        assert.ok(errors.some((e) => e instanceof SessionError && e.code === 'ERR_SESSION_HANDLER_FAILED'), 'reported as a handler failure');
        const next = await request(server.url, { path: '/fine', cookie: sessionCookie(failed) });
        assert.equal(next.status, 200);
        assert.equal(next.body, '2', 'the same session, free again');
      });
    });
  }
}
