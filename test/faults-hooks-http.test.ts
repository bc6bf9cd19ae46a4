// Fault tests, close hooks that fail, hang or close other sessions while a browser waits on the other end
// of a logout, over HTTP. Time moves by ManualClock only; waits are event-loop turns, never sleeps.
// (The request-side faults are in test/faults.test.ts; hooks that throw, reject or hang at the engine
// level in test/engine-close*.test.ts; every hook fault under every close reason in faults-teardown.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type CloseEvent, type SessionError } from '../src/index.js';
import { deferred, engineWithErrors, request, sessionCookie, settle, startServer } from './helpers.js';
import { keepLoopAlive, track } from './engine-harness.js';
import { CLOSE_TIMEOUT_MS as CLOSE_TIMEOUT, GUARD, idle, isClearing, stopAll as cleanup, until } from './faults-support.js';

keepLoopAlive();

// ---- close hooks that fail, over HTTP ----------------------------------------------------------------

test('logout while onClose throws: the browser still gets 200 with the clearing cookie, the handler goes on with a reset context, the old id is dead', GUARD, async () => {
  interface Vars { user?: string }
  const { engine, errors } = engineWithErrors<Vars>({ clock: new ManualClock(), init: () => ({}), onClose: () => { throw new Error('database down'); } });
  const server = await startServer(engine, async (req, res, proc) => {
    if (req.url === '/login') proc.vars.user = 'ann';
    if (req.url === '/logout') {
      const closed = await engine.closeSession(proc.sessionId);
      res.end(JSON.stringify({ closed, vars: proc.vars }));
      return;
    }
    res.end(proc.vars.user ?? 'guest');
  });
  try {
    const cookie = sessionCookie(await request(server.url, { path: '/login' }));
    const logout = await request(server.url, { path: '/logout', cookie });
    assert.equal(logout.status, 200);
    assert.ok(isClearing(logout));
    assert.deepEqual(JSON.parse(logout.body), { closed: true, vars: {} });
    assert.deepEqual(errors.map((e) => [e.code, (e.cause as Error).message]), [['ERR_SESSION_HOOK_FAILED', 'database down']]);
    const again = await request(server.url, { cookie });
    assert.equal(again.body, 'guest');
    assert.notEqual(sessionCookie(again), cookie);
    assert.equal(engine.stats().processes, 1);
  } finally {
    await cleanup(engine, server, undefined, []);
  }
});

test('logout while onClose hangs: the logout request waits closeTimeoutMs, other browsers are served meanwhile, then it answers 200 with the clearing cookie', GUARD, async () => {
  interface Vars { user?: string }
  const clock = new ManualClock();
  const hook = deferred();
  const { engine, errors } = engineWithErrors<Vars>({ clock, closeTimeoutMs: CLOSE_TIMEOUT, maxSessions: 2, init: () => ({}), onClose: () => hook.promise });
  const server = await startServer(engine, async (req, res, proc) => {
    if (req.url === '/logout') {
      await engine.closeSession(proc.sessionId);
      res.end('bye');
      return;
    }
    res.end('ok');
  });
  try {
    const cookie = sessionCookie(await request(server.url));
    const logout = track(request(server.url, { path: '/logout', cookie }));
    await until('the hook runs', () => engine.stats().closingSessions === 1);
    // The hanging hook holds nothing the others need: new browsers fill the cap (the closing one no longer counts).
    const others = await Promise.all([request(server.url), request(server.url)]);
    assert.deepEqual(others.map((r) => r.status), [200, 200]);
    clock.advance(CLOSE_TIMEOUT - 1);
    await settle();
    assert.equal(logout.settled, false);
    clock.advance(1);
    await until('the logout is answered', () => logout.settled);
    assert.equal(logout.value?.status, 200);
    assert.equal(logout.value?.body, 'bye');
    assert.ok(logout.value !== undefined && isClearing(logout.value));
    assert.deepEqual(errors.map((e) => e.code), ['ERR_SESSION_HOOK_TIMEOUT']);
    assert.deepEqual(idle(engine), { busy: 0, queued: 0, closing: 0, processes: 2 });
  } finally {
    await cleanup(engine, server, clock, [hook]);
  }
});

test('"log out on every device": onClose closes the user\'s other sessions (which do the same): each hook runs exactly once and the counts stay exact', GUARD, async () => {
  interface Vars { user?: string }
  const devices = new Map<string, Set<string>>();
  const hookRuns = new Map<string, number>();
  let engine!: SessionEngine<Vars>;
  let errors!: SessionError[];
  ({ engine, errors } = engineWithErrors<Vars>({
    init: () => ({}),
    onClose: async (proc) => {
      const runs = (hookRuns.get(proc.sessionId) ?? 0) + 1;
      hookRuns.set(proc.sessionId, runs);
      if (runs > 1) return; // only so that a broken engine fails this test instead of recursing until the stack overflows
      const mine = devices.get(proc.vars.user ?? '') ?? new Set<string>();
      for (const other of mine) if (other !== proc.sessionId) void engine.closeSession(other);
      await settle(1); // "save the user's state"
      mine.delete(proc.sessionId);
    },
  }));
  const closes: CloseEvent[] = [];
  engine.on('close', (event) => closes.push(event));
  const server = await startServer(engine, async (req, res, proc) => {
    if (req.url === '/login') {
      proc.vars.user = 'ann';
      const set = devices.get('ann') ?? new Set<string>();
      set.add(proc.sessionId);
      devices.set('ann', set);
    }
    if (req.url === '/logout') await engine.closeSession(proc.sessionId);
    res.end(proc.vars.user ?? 'guest');
  });
  try {
    const laptop = sessionCookie(await request(server.url, { path: '/login' }));
    const phone = sessionCookie(await request(server.url, { path: '/login' }));
    const tablet = sessionCookie(await request(server.url, { path: '/login' }));
    assert.equal(engine.stats().sessions, 3);

    const logout = await request(server.url, { path: '/logout', cookie: laptop });
    assert.equal(logout.status, 200);
    assert.ok(isClearing(logout));
    await until('every device is closed', () => closes.length >= 3 && engine.stats().closingSessions === 0);
    await settle();

    assert.deepEqual([...hookRuns.values()], [1, 1, 1], `each session's hook exactly once (runs: ${JSON.stringify([...hookRuns.values()])})`);
    assert.equal(closes.length, 3, `one 'close' event per session (got ${closes.length})`);
    assert.equal(new Set(closes.map((e) => e.sessionId)).size, 3);
    assert.equal(engine.stats().closed.closed, 3);
    assert.deepEqual(idle(engine), { busy: 0, queued: 0, closing: 0, processes: 0 }, 'no process counted twice (the gauge never goes negative)');
    for (const cookie of [phone, tablet]) assert.equal((await request(server.url, { cookie })).body, 'guest');
    assert.deepEqual(errors, []);
  } finally {
    await cleanup(engine, server, undefined, []);
  }
});
