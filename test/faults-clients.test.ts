// Fault matrix, the request side: clients that leave while their session closes or in the middle of
// their body; tasks that ignore their abort signal during a logout. Checked as the hook faults are
// (faults-teardown.test.ts): the close completes, the teardown released every lock and reset the
// context, the engine is healthy afterwards. Time moves by ManualClock only.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { ManualClock } from '../src/index.js';
import { readBody } from '../src/adapters/node/index.js';
import { deferred, engineWithErrors, request, sessionCookie, settle, startServer } from './helpers.js';
import { track } from './engine-harness.js';
import { app, assertAtRest, assertServesNewcomers, CLOSE_TIMEOUT_MS as CLOSE_TIMEOUT, GUARD, isClearing, stopAll, until, watchEscapes, type Vars } from './faults-support.js';

const escaped = watchEscapes();


describe('clients and tasks that misbehave: the session keeps (or cleanly loses) its context, locks never leak', () => {
  test('a client that leaves mid-request while its session is closed from outside: the close waits for the handler (no hook, lock kept), then hooks once and releases the lock', GUARD, async () => {
    const clock = new ManualClock();
    const hooked: { held: number; vars: unknown }[] = [];
    const { engine, errors } = engineWithErrors<Vars>({ clock, closeTimeoutMs: CLOSE_TIMEOUT, init: () => ({ n: 0 }), onClose: (proc) => { hooked.push({ held: proc.locks.held().length, vars: structuredClone(proc.vars) }); } });
    const gate = deferred();
    const entered = deferred();
    const handlerDone = deferred();
    const base = app(engine);
    const server = await startServer(engine, async (req, res, proc) => {
      if (req.url === '/slow') {
        proc.vars.n++;
        await proc.locks.tryLock('Products', 1);
        entered.resolve();
        await gate.promise;
        proc.vars.user = 'saved before the close';
        res.end('gone'); // to a client that left: a no-op
        handlerDone.resolve();
        return;
      }
      return base(req, res, proc);
    });
    try {
      const cookie = sessionCookie(await request(server.url));
      const id = cookie?.slice(6) ?? '';
      const req = http.request(`${server.url}/slow`, { agent: false, headers: { cookie: cookie ?? '' } });
      const cut = new Promise<void>((resolve) => req.on('error', () => resolve()));
      req.end();
      await entered.promise;
      req.destroy();
      await cut;
      const closing = track(engine.closeSession(id));
      clock.advance(CLOSE_TIMEOUT - 1);
      await settle();
      assert.equal(closing.settled, false, 'the handler still runs: the close waits for it');
      assert.equal(hooked.length, 0, 'no hook while a request may still change the context');
      assert.equal((await engine.lockManager.lockedBy({ table: 'Products', key: 1 }))?.sessionId, id);
      gate.resolve();
      await handlerDone.promise;
      await until('the close completes', () => closing.settled);
      assert.equal(closing.value, true);
      assert.deepEqual(hooked, [{ held: 1, vars: { n: 2, user: 'saved before the close' } }]);
      assert.deepEqual(errors, [], 'no drain timeout: the handler ended in time');
      assertAtRest(engine, 'at rest');
      await assertServesNewcomers(engine, server);
      assert.deepEqual(escaped, []);
    } finally {
      await stopAll(engine, server, clock, [gate]);
    }
  });

  test('a client that leaves in the middle of its body: readBody rejects with ERR_SESSION_BODY_ABORTED, nothing is reported (the client\'s doing), the process goes back and the session goes on', GUARD, async () => {
    const clock = new ManualClock();
    const { engine, errors } = engineWithErrors<Vars>({ clock, init: () => ({ n: 0 }) });
    const reading = deferred();
    const failed = deferred();
    const base = app(engine);
    const server = await startServer(engine, async (req, res, proc) => {
      if (req.method === 'POST') {
        proc.vars.n++;
        const body = readBody(req);
        reading.resolve();
        try {
          await body; // not caught by the application: it escapes to the adapter
        } finally {
          failed.resolve();
        }
        res.end('unreachable');
        return;
      }
      return base(req, res, proc);
    });
    try {
      const cookie = sessionCookie(await request(server.url));
      const req = http.request(`${server.url}/upload`, { method: 'POST', agent: false, headers: { cookie: cookie ?? '', 'content-length': '1000' } });
      req.on('error', () => {});
      req.write('part of it');
      await reading.promise;
      req.destroy();
      await failed.promise;
      await until('the process goes back', () => engine.stats().busySessions === 0);
      assert.deepEqual(errors.map((e) => e.code), [], 'an aborted body is not a handler failure');
      assert.equal(engine.stats().handlerErrors, 0);
      assert.equal((await request(server.url, { cookie })).body, '3', 'same session, context kept');
      assertAtRest(engine, 'at rest');
      assert.deepEqual(escaped, []);
    } finally {
      await stopAll(engine, server, clock, []);
    }
  });

  test('logout while a spawned task ignores its abort signal: the logout waits closeTimeoutMs, then every process is hooked once, the task\'s lock is released and the answer clears the cookie', GUARD, async () => {
    const clock = new ManualClock();
    const hooked: string[] = [];
    const { engine, errors } = engineWithErrors<Vars>({ clock, closeTimeoutMs: CLOSE_TIMEOUT, init: () => ({ n: 0 }), onClose: (proc, reason) => { hooked.push(`${proc.name}:${reason}:${proc.locks.held().length}`); } });
    const finish = deferred();
    const base = app(engine);
    const server = await startServer(engine, async (req, res, proc) => {
      if (req.url === '/export') {
        proc.spawn('export', async (task) => {
          await task.locks.tryLock('Products', 1);
          await finish.promise; // never looks at task.signal
        });
        res.end('started');
        return;
      }
      return base(req, res, proc);
    });
    try {
      const cookie = sessionCookie(await request(server.url, { path: '/export' }));
      await until('the task holds its lock', () => engine.stats().locksHeld === 1);
      const logout = track(request(server.url, { path: '/logout', cookie }));
      await until('the close starts', () => engine.stats().closingSessions === 1);
      clock.advance(CLOSE_TIMEOUT - 1);
      await settle();
      assert.equal(logout.settled, false, 'the logout waits for the task, up to closeTimeoutMs');
      assert.deepEqual(hooked, []);
      clock.advance(1);
      await until('the logout is answered', () => logout.settled);
      assert.equal(logout.value?.status, 200);
      assert.ok(isClearing(logout.value));
      assert.deepEqual(JSON.parse(logout.value?.body ?? ''), { closed: true, vars: {}, held: 0 });
      assert.deepEqual(hooked.sort(), ['export:closed:1', 'web:closed:0']);
      assert.deepEqual(errors.map((e) => e.code), ['ERR_SESSION_DRAIN_TIMEOUT']);
      assertAtRest(engine, 'at rest');
      await assertServesNewcomers(engine, server);
      const hooks = hooked.length;

      finish.resolve(); // the task ends at last: nothing runs twice, nothing leaks
      await settle();
      assert.equal(hooked.length, hooks);
      assert.deepEqual(errors.map((e) => e.code), ['ERR_SESSION_DRAIN_TIMEOUT']);
      assertAtRest(engine, 'at rest after the task ended');
      assert.deepEqual(escaped, []);
    } finally {
      await stopAll(engine, server, clock, [finish]);
    }
  });
});
