// Fault matrix, the request side: handlers that throw with a record lock held, that log their own
// session out and throw, that never answer; clients that leave while their session closes or in the
// middle of their body; tasks that ignore their abort signal during a logout. Each is checked as the
// hook faults are (faults-teardown.test.ts): the close completes, the teardown released every lock and
// reset the context, the engine is healthy afterwards. Time moves by ManualClock only.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { ManualClock, SessionEngine, type CloseReason, type SessionError } from '../src/index.js';
import { readBody } from '../src/adapters/node/index.js';
import { deferred, engineWithErrors, request, sessionCookie, settle, startServer } from './helpers.js';
import { track } from './engine-harness.js';
import { app, assertAtRest, assertServesNewcomers, CLOSE_TIMEOUT_MS as CLOSE_TIMEOUT, GUARD, isClearing, locksIn, stopAll, until, watchEscapes, type Vars } from './faults-support.js';

const escaped = watchEscapes();

// ---- handlers and clients that misbehave -----------------------------------------------------------

describe('handlers and clients that misbehave: the session keeps (or cleanly loses) its context, locks never leak', () => {
  for (const kind of ['throws', 'rejects'] as const) {
    test(`a handler that ${kind} while holding a record lock: 500, the process is free, the session keeps its context and lock until it closes, which releases it`, GUARD, async () => {
      const clock = new ManualClock();
      const { engine, errors } = engineWithErrors<Vars>({ clock, closeTimeoutMs: CLOSE_TIMEOUT, init: () => ({ n: 0 }) });
      const base = app(engine);
      const server = await startServer(engine, async (req, res, proc) => {
        if (req.url === '/fail') {
          proc.vars.n++;
          await proc.locks.tryLock('Products', 1);
          if (kind === 'rejects') await settle(1);
          throw new Error('handler fault');
        }
        return base(req, res, proc);
      });
      try {
        const cookie = sessionCookie(await request(server.url));
        const failed = await request(server.url, { path: '/fail', cookie });
        assert.equal(failed.status, 500);
        assert.deepEqual(errors.map((e) => e.code), ['ERR_SESSION_HANDLER_FAILED']);
        assert.equal(engine.stats().busySessions, 0, 'the process went back');
        assert.equal(engine.stats().locksHeld, 1, 'the lock stays with the session, like its vars');
        const other = sessionCookie(await request(server.url));
        assert.equal((await request(server.url, { path: '/lock', cookie: other })).body, 'false');
        assert.equal((await request(server.url, { cookie })).body, '3', 'same session, context kept');

        assert.equal(await engine.closeSession(cookie?.slice(6) ?? ''), true);
        assert.equal((await request(server.url, { path: '/lock', cookie: other })).body, 'true', 'closing the session released the lock');
        assert.equal(await engine.closeSession(other?.slice(6) ?? ''), true);
        assertAtRest(engine, 'at rest');
        await assertServesNewcomers(engine, server);
        assert.deepEqual(escaped, []);
      } finally {
        await stopAll(engine, server, clock, []);
      }
    });
  }

  test('a handler that logs its own session out, then throws: 500 with the clearing cookie, the hook ran once with the context, the lock is released, the old id is dead', GUARD, async () => {
    const clock = new ManualClock();
    const hooked: unknown[] = [];
    let engine!: SessionEngine<Vars>;
    let errors!: SessionError[];
    ({ engine, errors } = engineWithErrors<Vars>({ clock, closeTimeoutMs: CLOSE_TIMEOUT, init: () => ({ n: 0 }), onClose: (proc) => { hooked.push(structuredClone(proc.vars)); } }));
    const base = app(engine);
    const server = await startServer(engine, async (req, res, proc) => {
      if (req.url === '/logout-then-fail') {
        await engine.closeSession(proc.sessionId);
        throw new Error('after logout');
      }
      return base(req, res, proc);
    });
    try {
      const cookie = sessionCookie(await request(server.url, { path: '/work' }));
      const failed = await request(server.url, { path: '/logout-then-fail', cookie });
      assert.equal(failed.status, 500);
      assert.ok(isClearing(failed), 'even a failed answer clears the dead cookie');
      assert.deepEqual(hooked, [{ user: 'ann', n: 1 }]);
      assert.deepEqual(errors.map((e) => e.code), ['ERR_SESSION_HANDLER_FAILED']);
      assertAtRest(engine, 'at rest');
      const again = await request(server.url, { cookie });
      assert.equal(again.body, '1');
      assert.notEqual(sessionCookie(again), cookie);
      await assertServesNewcomers(engine, server);
      assert.equal(hooked.length, engine.stats().created - engine.stats().sessions, 'one hook per closed session, never twice');
      assert.deepEqual(escaped, []);
    } finally {
      await stopAll(engine, server, clock, []);
    }
  });

  test('a handler that throws while its session is being closed from outside: the close waits for it, then hooks once and releases its lock, with no drain timeout', GUARD, async () => {
    const clock = new ManualClock();
    const hooked: { vars: unknown; held: number }[] = [];
    const { engine, errors } = engineWithErrors<Vars>({ clock, closeTimeoutMs: CLOSE_TIMEOUT, init: () => ({ n: 0 }), onClose: (proc) => { hooked.push({ vars: structuredClone(proc.vars), held: proc.locks.held().length }); } });
    const gate = deferred();
    const entered = deferred();
    const base = app(engine);
    const server = await startServer(engine, async (req, res, proc) => {
      if (req.url === '/slow-fail') {
        proc.vars.n++;
        await proc.locks.tryLock('Products', 1);
        entered.resolve();
        await gate.promise;
        throw new Error('failed while closing');
      }
      return base(req, res, proc);
    });
    try {
      const cookie = sessionCookie(await request(server.url));
      const id = cookie?.slice(6) ?? '';
      const failing = track(request(server.url, { path: '/slow-fail', cookie }));
      await entered.promise;
      const closing = track(engine.closeSession(id));
      await settle();
      assert.equal(closing.settled, false, 'the close waits for the running request');
      assert.equal(hooked.length, 0);
      gate.resolve();
      await until('the close completes', () => closing.settled && failing.settled);
      assert.equal(closing.value, true);
      assert.equal(failing.value?.status, 500);
      assert.ok(isClearing(failing.value));
      assert.deepEqual(hooked, [{ vars: { n: 2 }, held: 1 }], 'the hook saw what the failed request left');
      assert.deepEqual(errors.map((e) => e.code), ['ERR_SESSION_HANDLER_FAILED']);
      assert.equal(engine.stats().drainTimeouts, 0);
      assertAtRest(engine, 'at rest');
      await assertServesNewcomers(engine, server);
      assert.deepEqual(escaped, []);
    } finally {
      await stopAll(engine, server, clock, [gate]);
    }
  });

  test('a handler that never answers, at stop(): stop completes after closeTimeoutMs (ERR_SESSION_DRAIN_TIMEOUT), its hook runs once, its lock is released; the late answer clears the cookie', GUARD, async () => {
    const clock = new ManualClock();
    const hooked: { reason: CloseReason; held: number }[] = [];
    const { engine, errors } = engineWithErrors<Vars>({ clock, closeTimeoutMs: CLOSE_TIMEOUT, init: () => ({ n: 0 }), onClose: (proc, reason) => { hooked.push({ reason, held: proc.locks.held().length }); } });
    const forever = deferred();
    const entered = deferred();
    const base = app(engine);
    const server = await startServer(engine, async (req, res, proc) => {
      if (req.url === '/hang') {
        await proc.locks.tryLock('Products', 1);
        entered.resolve();
        await forever.promise;
        res.end('late');
        return;
      }
      return base(req, res, proc);
    });
    try {
      const cookie = sessionCookie(await request(server.url));
      const stuck = track(request(server.url, { path: '/hang', cookie }));
      await entered.promise;
      const stopping = track(engine.stop());
      clock.advance(CLOSE_TIMEOUT - 1);
      await settle();
      assert.equal(stopping.settled, false);
      assert.equal((await request(server.url)).status, 503, 'new work is refused while stopping');
      clock.advance(1);
      await until('stop completes', () => stopping.settled);
      assert.deepEqual(errors.map((e) => e.code), ['ERR_SESSION_DRAIN_TIMEOUT']);
      assert.deepEqual(hooked, [{ reason: 'shutdown', held: 1 }]);
      assert.equal(await engine.lockManager.lockedBy({ table: 'Products', key: 1 }), null);
      assert.deepEqual({ sessions: engine.stats().sessions, processes: engine.stats().processes, closing: engine.stats().closingSessions, locks: locksIn(engine) }, { sessions: 0, processes: 0, closing: 0, locks: 0 });
      forever.resolve();
      await until('the late answer', () => stuck.settled);
      assert.equal(stuck.value?.status, 200);
      assert.ok(isClearing(stuck.value));
      await settle();
      assert.equal(hooked.length, 1);
      assert.deepEqual(escaped, []);
    } finally {
      await stopAll(engine, server, clock, [forever]);
    }
  });

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
