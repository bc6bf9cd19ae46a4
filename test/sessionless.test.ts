// createServer's `sessionless` option: requests that need no session (assets, health checks, metric
// scrapes) are answered before any session work, so they can neither create, extend nor evict one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from '../src/adapters/node/index.js';
import { ManualClock, SessionError } from '../src/index.js';
import { deferred, engineWithErrors, request, sessionCookie, sessionIdOf, settle, startServer } from './helpers.js';

const HOUR = 3_600_000;

function healthCheck(req: IncomingMessage, res: ServerResponse): boolean {
  if (req.url !== '/healthz') return false;
  res.end('ok');
  return true;
}

test('a request the sessionless function takes gets no cookie, creates no session and cannot evict one at the cap; the others get sessions as usual', async () => {
  const clock = new ManualClock();
  const { engine, errors } = engineWithErrors<{ n: number }>({ clock, maxSessions: 1, init: () => ({ n: 0 }) });
  const server = await startServer(engine, (_req, res, proc) => res.end(String(++proc.vars.n)), { sessionless: healthCheck });
  try {
    const user = await request(server.url);
    const id = sessionIdOf(user);
    assert.ok(id !== undefined && id !== '');
    // At the cap (1) with that one session idle: a cookie-less request would evict it; a health check must not.
    clock.advance(HOUR);
    const expiresBefore = engine.sessionExpiration(id)?.getTime();
    for (let i = 0; i < 3; i++) {
      const health = await request(server.url, { path: '/healthz' });
      assert.equal(health.status, 200);
      assert.equal(health.body, 'ok');
      assert.deepEqual(health.setCookies, [], 'no Set-Cookie on a sessionless answer');
    }
    // Even with the session's own cookie: it is not read, so the session's lifetime does not move.
    const withCookie = await request(server.url, { path: '/healthz', cookie: sessionCookie(user) });
    assert.deepEqual(withCookie.setCookies, []);
    assert.equal(engine.sessionExpiration(id)?.getTime(), expiresBefore, 'a sessionless request does not extend the session');
    assert.deepEqual(engine.sessions().map((s) => s.id), [id], 'the session is still there, alone');
    assert.equal(engine.stats().created, 1);
    assert.equal(engine.stats().closed.evicted, 0);
    // The session handler still serves everything else, in the same session.
    const again = await request(server.url, { cookie: sessionCookie(user) });
    assert.equal(again.body, '2');
    assert.equal(sessionIdOf(again), id);
    assert.deepEqual(errors, []);
  } finally {
    await server.close();
    await engine.stop();
  }
});

test('a sessionless function that throws gives a generic 500 and a handler failure on the error event; one that returns a promise has taken the request, and its rejection is answered the same way', async () => {
  const { engine, errors } = engineWithErrors();
  const slow = deferred();
  const server = await startServer(engine, (_req, res) => res.end('session'), {
    sessionless: (req, res) => {
      if (req.url === '/throws') throw new Error('secret detail');
      if (req.url === '/async') return slow.promise.then(() => { res.end('later'); });
      if (req.url === '/rejects') return Promise.reject(new Error('another secret'));
      return false;
    },
  });
  try {
    const thrown = await request(server.url, { path: '/throws' });
    assert.equal(thrown.status, 500);
    assert.doesNotMatch(thrown.body, /secret/);
    assert.deepEqual(thrown.setCookies, []);
    const rejected = await request(server.url, { path: '/rejects' });
    assert.equal(rejected.status, 500);
    assert.doesNotMatch(rejected.body, /secret/);
    await settle();
    assert.deepEqual(errors.map((e) => e.code), ['ERR_SESSION_HANDLER_FAILED', 'ERR_SESSION_HANDLER_FAILED']);
    assert.equal(((errors[0] as SessionError).cause as Error).message, 'secret detail');
    assert.equal(engine.stats().handlerErrors, 2);

    const pending = request(server.url, { path: '/async' });
    await settle();
    slow.resolve();
    const later = await pending;
    assert.equal(later.body, 'later', 'a returned promise means the request was taken: the session handler never ran');
    assert.deepEqual(later.setCookies, []);
    assert.equal(engine.stats().created, 0, 'none of these requests made a session');
    const normal = await request(server.url);
    assert.equal(normal.body, 'session');
    assert.equal(engine.stats().created, 1);
  } finally {
    await server.close();
    await engine.stop();
  }
});

test('sessionless must be a function', () => {
  const { engine } = engineWithErrors();
  assert.throws(() => createServer(engine, () => {}, { sessionless: 'yes' as never }), TypeError);
  void engine.stop();
});
