// Fault tests: what the application or a client does wrong, and what the engine still guarantees.
// A handler that never answers, a client that leaves mid-request (running or queued), spawned tasks that
// ignore their abort signal, and close hooks that fail, hang or close other sessions while a browser
// waits on the other end (test/faults-hooks-http.test.ts). Time moves by ManualClock only; waits are
// event-loop turns, never sleeps.
// (Hooks that throw, reject, hang or close their own session at the engine level are in
// test/engine-close*.test.ts; these add what was missing there, over HTTP where a client is involved.
// test/faults-teardown.test.ts runs every hook fault under every close reason, faults-handlers and faults-clients the request-side
// faults with a record lock held, checking teardown, locks and the engine's health after each.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { ManualClock, SessionEngine, type CloseEvent, type CloseReason, type SessionError, type WebProcess } from '../src/index.js';
import { deferred, engineWithErrors, request, sessionCookie, sessionIdOf, settle, startServer } from './helpers.js';
import { keepLoopAlive, track } from './engine-harness.js';
import { CLOSE_TIMEOUT_MS as CLOSE_TIMEOUT, GUARD, idle, isClearing, stopAll as cleanup, until } from './faults-support.js';

keepLoopAlive();

// ---- a handler that never answers ------------------------------------------------------------------

test('a handler that never answers: closeSession from outside completes after closeTimeoutMs with ERR_SESSION_DRAIN_TIMEOUT, its locks are released and other sessions keep working', GUARD, async () => {
  interface Vars { n: number }
  const clock = new ManualClock();
  const hooks: { id: string; reason: CloseReason; lockHolder: string | undefined }[] = [];
  let engine!: SessionEngine<Vars>;
  let errors!: SessionError[];
  ({ engine, errors } = engineWithErrors<Vars>({
    clock, closeTimeoutMs: CLOSE_TIMEOUT, init: () => ({ n: 0 }),
    onClose: async (proc, reason) => { hooks.push({ id: proc.sessionId, reason, lockHolder: (await engine.lockManager.lockedBy({ table: 'Products', key: 1 }))?.sessionId }); },
  }));
  const forever = deferred(); // resolved only at the very end, to see what a late handler does
  const hanging = deferred();
  const server = await startServer(engine, async (req, res, proc) => {
    proc.vars.n++;
    if (req.url === '/hang') {
      await proc.locks.tryLock('Products', 1);
      hanging.resolve();
      await forever.promise;
      proc.vars.n = 1_000; // too late: the context was torn down
      res.end('late');
      return;
    }
    if (req.url === '/lock') {
      res.end(String(await proc.locks.tryLock('Products', 1)));
      return;
    }
    res.end(String(proc.vars.n));
  });
  try {
    const a = sessionCookie(await request(server.url));
    const idA = a?.slice(6) ?? '';
    const b = sessionCookie(await request(server.url));
    const stuck = request(server.url, { path: '/hang', cookie: a });
    await hanging.promise;
    assert.equal((await request(server.url, { path: '/lock', cookie: b })).body, 'false', 'the hung request holds its lock');

    const closing = track(engine.closeSession(idA));
    clock.advance(CLOSE_TIMEOUT - 1);
    await settle();
    assert.equal(closing.settled, false, 'the close waits for the running request up to closeTimeoutMs');
    assert.equal(hooks.length, 0);
    // Meanwhile the engine serves everyone else, and the closing session's id is already dead.
    assert.equal((await request(server.url, { cookie: b })).body, '3');
    const fresh = await request(server.url);
    assert.equal(fresh.status, 200);
    const reused = await request(server.url, { cookie: a });
    assert.equal(reused.status, 200);
    assert.notEqual(sessionIdOf(reused), idA, 'a dead id gets a new session, even while its close waits');

    clock.advance(1);
    await until('the close gives up waiting', () => closing.settled);
    assert.equal(closing.value, true);
    assert.deepEqual(errors.map((e) => [e.code, e.sessionId]), [['ERR_SESSION_DRAIN_TIMEOUT', idA]]);
    assert.deepEqual(hooks, [{ id: idA, reason: 'closed', lockHolder: idA }], 'the hook ran once, context (and lock) intact');
    assert.equal(await engine.lockManager.lockedBy({ table: 'Products', key: 1 }), null, 'teardown released the lock');
    assert.equal((await request(server.url, { path: '/lock', cookie: b })).body, 'true', 'another session takes the record');
    assert.equal(engine.stats().drainTimeouts, 1);
    assert.equal(engine.stats().closingSessions, 0);

    // The handler ends at last: its client gets the clearing cookie, nothing runs twice, nothing leaks.
    forever.resolve();
    const late = await stuck;
    assert.equal(late.status, 200);
    assert.ok(isClearing(late), 'the late response clears the dead cookie');
    await settle();
    assert.equal(hooks.length, 1);
    assert.equal(engine.stats().closed.closed, 1);
    assert.deepEqual(idle(engine), { busy: 0, queued: 0, closing: 0, processes: engine.stats().sessions });
    assert.ok(!engine.sessions().some((s) => s.id === idA));
  } finally {
    await cleanup(engine, server, clock, [forever]);
  }
});

// ---- clients that leave ----------------------------------------------------------------------------

/** Sends a request on its own connection and returns a handle to cut it. */
function openRequest(url: string, path: string, cookie: string | undefined): { req: http.ClientRequest; response: Promise<number | 'cut'> } {
  const req = http.request(`${url}${path}`, { agent: false, headers: cookie === undefined ? {} : { cookie } });
  const response = new Promise<number | 'cut'>((resolve) => {
    req.on('response', (res) => { res.resume(); resolve(res.statusCode ?? 0); });
    req.on('error', () => resolve('cut'));
  });
  req.end();
  return { req, response };
}

test('a client that disconnects mid-request: its process stays taken until the handler ends (no overlap), then the session is idle again and keeps working', GUARD, async () => {
  interface Vars { n: number; log: string[] }
  const { engine, errors } = engineWithErrors<Vars>({ clock: new ManualClock(), init: () => ({ n: 0, log: [] }) });
  const gate = deferred();
  const entered = deferred();
  let running = 0;
  let overlap = false;
  const server = await startServer(engine, async (req, res, proc) => {
    running++;
    if (running > 1) overlap = true;
    proc.vars.n++;
    proc.vars.log.push(req.url ?? '');
    if (req.url === '/slow') {
      entered.resolve();
      await gate.promise;
    }
    running--;
    res.end(String(proc.vars.n)); // on a destroyed response for the client that left: a no-op
  });
  try {
    const cookie = sessionCookie(await request(server.url));
    const slow = openRequest(server.url, '/slow', cookie);
    await entered.promise;
    slow.req.destroy();
    assert.equal(await slow.response, 'cut');
    await settle();
    assert.deepEqual(idle(engine), { busy: 1, queued: 0, closing: 0, processes: 1 }, 'the handler still runs: its process is not free');

    const next = track(request(server.url, { cookie }));
    await until('the next request of the session queues', () => engine.stats().queuedRequests === 1);
    assert.equal(next.settled, false, 'it waits for the abandoned request\'s handler');

    gate.resolve();
    await until('the queued request is answered', () => next.settled);
    assert.equal(next.value?.status, 200);
    assert.equal(next.value?.body, '3');
    assert.equal(overlap, false, 'requests of one process never overlap');
    assert.deepEqual(idle(engine), { busy: 0, queued: 0, closing: 0, processes: 1 });
    assert.deepEqual(errors, []);
  } finally {
    await cleanup(engine, server, undefined, [gate]);
  }
});

test('a client that disconnects while its request is queued: the request runs (or not) without leaking its turn, and the session is idle afterwards', GUARD, async () => {
  interface Vars { n: number }
  const { engine, errors } = engineWithErrors<Vars>({ clock: new ManualClock(), init: () => ({ n: 0 }) });
  const gate = deferred();
  const entered = deferred();
  const server = await startServer(engine, async (req, res, proc) => {
    proc.vars.n++;
    if (req.url === '/slow') {
      entered.resolve();
      await gate.promise;
    }
    res.end(String(proc.vars.n));
  });
  try {
    const cookie = sessionCookie(await request(server.url));
    const slow = track(request(server.url, { path: '/slow', cookie }));
    await entered.promise;
    const queued = openRequest(server.url, '/', cookie);
    await until('the second request queues', () => engine.stats().queuedRequests === 1);
    queued.req.destroy();
    assert.equal(await queued.response, 'cut');

    gate.resolve();
    await until('the slow request is answered', () => slow.settled);
    assert.equal(slow.value?.status, 200);
    await until('the abandoned request gave its turn back', () => engine.stats().busySessions === 0);
    assert.deepEqual(idle(engine), { busy: 0, queued: 0, closing: 0, processes: 1 });
    const after = await request(server.url, { cookie });
    assert.equal(after.status, 200);
    assert.ok(['3', '4'].includes(after.body), `the session goes on (abandoned request ran or not): ${after.body}`);
    assert.deepEqual(errors, []);
  } finally {
    await cleanup(engine, server, undefined, [gate]);
  }
});

// ---- spawned tasks that ignore the abort signal ----------------------------------------------------

for (const how of ['closeSession', 'stop'] as const) {
  test(`spawned tasks that ignore their abort signal (${how}): the close gives up after closeTimeoutMs, then every process is hooked once and torn down; the late tasks change nothing`, GUARD, async () => {
    interface Vars { n: number }
    const clock = new ManualClock();
    const hooked: { name: string; reason: CloseReason; aborted: boolean }[] = [];
    const { engine, errors } = engineWithErrors<Vars>({
      clock, closeTimeoutMs: CLOSE_TIMEOUT, init: () => ({ n: 0 }),
      onClose: (proc, reason) => { hooked.push({ name: proc.name, reason, aborted: proc.signal.aborted }); },
    });
    const closes: CloseEvent[] = [];
    engine.on('close', (event) => closes.push(event));
    const finishA = deferred();
    const finishB = deferred();
    const tasks: WebProcess<Vars>[] = [];
    try {
      const lease = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
      const id = lease.sessionId;
      tasks.push(lease.proc.spawn('export', async (proc) => {
        await proc.locks.tryLock('Jobs', 1);
        await finishA.promise; // ignores proc.signal
        proc.vars.n = 42;
      }));
      tasks.push(lease.proc.spawn('mailer', async (proc) => {
        await finishB.promise; // ignores proc.signal, then tries to use its torn-down process
        await proc.locks.tryLock('Jobs', 2);
      }));
      lease.release();
      await settle();
      assert.equal((await engine.lockManager.lockedBy({ table: 'Jobs', key: 1 }))?.processId, tasks[0]?.processId);

      const closing = track<unknown>(how === 'closeSession' ? engine.closeSession(id) : engine.stop());
      await settle();
      assert.ok(tasks.every((t) => t.signal.aborted), 'both tasks were asked to stop');
      clock.advance(CLOSE_TIMEOUT - 1);
      await settle();
      assert.equal(closing.settled, false);
      assert.equal(hooked.length, 0, 'no hook while the tasks may still run');
      clock.advance(1);
      await until('the close gives up on the tasks', () => closing.settled);

      const reason = how === 'closeSession' ? 'closed' : 'shutdown';
      assert.deepEqual(errors.map((e) => [e.code, e.sessionId]), [['ERR_SESSION_DRAIN_TIMEOUT', id]]);
      assert.deepEqual(hooked.map((h) => `${h.name}:${h.reason}:${h.aborted}`).sort(), [`export:${reason}:true`, `mailer:${reason}:true`, `web:${reason}:true`]);
      assert.deepEqual(closes.map((e) => [e.sessionId, e.reason, e.processCount]), [[id, reason, 3]]);
      assert.equal(await engine.lockManager.lockedBy({ table: 'Jobs', key: 1 }), null, 'the task\'s lock is released at teardown');
      assert.ok(tasks.every((t) => t.closed));
      assert.equal(engine.stats().processes, 0);

      // The tasks end at last: one writes into a reset context, the other tries to lock with a dead process.
      finishA.resolve();
      finishB.resolve();
      await settle();
      assert.equal(hooked.length, 3, 'no hook runs twice');
      assert.equal(closes.length, 1);
      assert.equal(await engine.lockManager.lockedBy({ table: 'Jobs', key: 2 }), null, 'a torn-down process cannot take a lock');
      assert.equal((engine.lockManager as unknown as { size: number }).size, 0);
      assert.deepEqual(errors.map((e) => e.code), ['ERR_SESSION_DRAIN_TIMEOUT', 'ERR_SESSION_TASK_FAILED'], 'the late lock attempt is reported as the task\'s failure');
      assert.equal((errors[1]?.cause as SessionError | undefined)?.code, 'ERR_SESSION_CLOSED');
      assert.deepEqual({ processes: engine.stats().processes, sessions: engine.stats().sessions, closing: engine.stats().closingSessions }, { processes: 0, sessions: 0, closing: 0 });

      // The engine is healthy: a new session takes the record the task held (or, stopped, it refuses cleanly).
      if (how === 'closeSession') {
        const next = await engine.acquire({ sessionId: id, ip: '127.0.0.1' });
        assert.notEqual(next.sessionId, id, 'the dead id gets a new session');
        assert.equal(await next.proc.locks.tryLock('Jobs', 1), true);
        next.release();
        assert.deepEqual({ busy: engine.stats().busySessions, sessions: engine.stats().sessions, processes: engine.stats().processes, locksHeld: engine.stats().locksHeld }, { busy: 0, sessions: 1, processes: 1, locksHeld: 1 });
      } else {
        await assert.rejects(engine.acquire({ sessionId: undefined, ip: '127.0.0.1' }), { code: 'ERR_SESSION_STOPPED' });
      }
    } finally {
      await cleanup(engine, undefined, clock, [finishA, finishB]);
    }
  });
}
