// Fault matrix, the request side: handlers that throw with a record lock held, that log their own
// session out and throw, that never answer. Each is checked as the hook faults are
// (faults-teardown.test.ts): the close completes, the teardown released every lock and reset the
// context, the engine is healthy afterwards. Clients that leave and tasks that ignore their signal:
// faults-clients.test.ts. Time moves by ManualClock only.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type CloseReason, type SessionError } from '../src/index.js';
import { deferred, engineWithErrors, request, sessionCookie, settle, startServer } from './helpers.js';
import { track } from './engine-harness.js';
import { app, assertAtRest, assertServesNewcomers, CLOSE_TIMEOUT_MS as CLOSE_TIMEOUT, GUARD, isClearing, locksIn, stopAll, until, watchEscapes, type Vars } from './faults-support.js';

const escaped = watchEscapes();


describe('handlers that misbehave: the session keeps (or cleanly loses) its context, locks never leak', () => {
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

});
