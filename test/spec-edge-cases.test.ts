// Spec §9 edge cases (docs/spec-edge-cases.md) that no other test checked on both stores: the eviction
// order of sessions idle since the same millisecond (2), a hook that throws (3) or hangs (4), closes that
// race (5), a timed-out session's cookie (8), a close asked from another session's request (10), the
// expiry of a closed id (11), a refused request restarting no clock (13), the clamped cap (14).
// Cases 21 and 22 (several processes): spec-edge-cases-processes.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type SessionError } from '../src/index.js';
import { eventually, request, sessionIdOf, settle, startServer } from './helpers.js';
import { engineOn, type Vars } from './spec-edge-cases-support.js';
import { storeChoices } from './store-choices.js';

const IP = '127.0.0.1';
const OTHER_IP = '127.0.0.2';
const MINUTE = 60_000;


/** One complete request: acquire, optional work, release. Returns the session id. */
async function visit(engine: SessionEngine<Vars>, sessionId?: string, ip = IP): Promise<string> {
  const lease = await engine.acquire({ sessionId, ip });
  lease.release();
  return lease.sessionId;
}

/** True once no live session is busy (on Redis a release lands a round trip later). */
function allIdle(engine: SessionEngine<Vars>): Promise<boolean> {
  return eventually(() => engine.sessions().every((s) => !s.busy), 3_000);
}

for (const [name, storeFor] of storeChoices({ pollIntervalMs: 20 })) {
  test(`${name}: case 2, sessions idle since the same millisecond are evicted in the order their last requests ended, not by creation`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const { engine, errors, closes } = engineOn({ ...choice.options, clock, maxSessions: 2 });
    try {
      const a = await visit(engine);
      const b = await visit(engine);
      assert.ok(await allIdle(engine));
      await visit(engine, a); // the same millisecond: a's last request ended after b's
      assert.ok(await allIdle(engine));
      const c = await visit(engine);
      assert.ok(await eventually(() => closes.length === 1, 3_000), 'one session evicted');
      assert.deepEqual(closes.map((e) => [e.sessionId, e.reason]), [[b, 'evicted']], 'b went idle first (the spec would pick a, created first)');
      assert.deepEqual(engine.sessions().map((s) => s.id).sort(), [a, c].sort());
      assert.deepEqual(errors, []);
    } finally {
      await engine.stop();
    }
  });

  test(`${name}: case 3, an onClose that throws is reported (ERR_SESSION_HOOK_FAILED) and the teardown completes: lock released, id dead`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    let hooks = 0;
    const { engine, errors } = engineOn({ ...choice.options, clock, onClose: () => { hooks++; throw new Error('hook broke'); } });
    try {
      const lease = await engine.acquire({ sessionId: undefined, ip: IP });
      assert.equal(await lease.run(() => lease.proc.locks.tryLock('t', 'k1')), true);
      lease.release();
      assert.ok(await allIdle(engine));
      assert.equal(await engine.closeSession(lease.sessionId), true);
      assert.equal(hooks, 1);
      assert.deepEqual(errors, ['ERR_SESSION_HOOK_FAILED']);
      assert.equal(engine.stats().hookErrors, 1);
      const other = await engine.acquire({ sessionId: lease.sessionId, ip: IP });
      assert.notEqual(other.sessionId, lease.sessionId, 'the closed id got a new session');
      assert.equal(await other.run(() => other.proc.locks.tryLock('t', 'k1')), true, 'the lock was released');
      other.release();
    } finally {
      await engine.stop();
    }
  });

  test(`${name}: case 4, while onClose hangs the id already gets a new session; at closeTimeoutMs the hook is given up (ERR_SESSION_HOOK_TIMEOUT) and the teardown completes`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    let hookStarted = false;
    // The first hook never settles; those of stop() at the end return at once.
    const { engine, errors } = engineOn({ ...choice.options, clock, closeTimeoutMs: 5_000, onClose: () => { if (hookStarted) return undefined; hookStarted = true; return new Promise<void>(() => {}); } });
    try {
      const lease = await engine.acquire({ sessionId: undefined, ip: IP });
      assert.equal(await lease.run(() => lease.proc.locks.tryLock('t', 'k1')), true);
      lease.release();
      assert.ok(await allIdle(engine));
      let closed: boolean | undefined;
      void engine.closeSession(lease.sessionId).then((value) => { closed = value; });
      assert.ok(await eventually(() => hookStarted, 3_000), 'the hook started');
      const during = await engine.acquire({ sessionId: lease.sessionId, ip: IP });
      assert.notEqual(during.sessionId, lease.sessionId, 'a request with the closing id gets a new session');
      during.release();
      await settle();
      assert.equal(closed, undefined, 'the close waits for the hook');
      clock.advance(5_000);
      assert.ok(await eventually(() => closed !== undefined, 3_000), 'the close ended at its deadline');
      assert.equal(closed, true);
      assert.deepEqual(errors, ['ERR_SESSION_HOOK_TIMEOUT']);
      const other = await engine.acquire({ sessionId: undefined, ip: IP });
      assert.equal(await other.run(() => other.proc.locks.tryLock('t', 'k1')), true, 'the lock was released');
      other.release();
    } finally {
      clock.advance(5_000); // a hook still hanging after a failed assertion
      await engine.stop();
    }
  });

  test(`${name}: case 5, two closeSession calls in the same tick and a timeout due meanwhile run the hook once; a later close is a no-op (false)`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const hooks: string[] = [];
    const { engine, errors, closes } = engineOn({ ...choice.options, clock, inactiveProcessTimeoutMs: MINUTE, onClose: (_proc, reason) => { hooks.push(reason); } });
    try {
      const id = await visit(engine);
      assert.ok(await allIdle(engine));
      const first = engine.closeSession(id);
      const second = engine.closeSession(id);
      clock.advance(MINUTE + 1_000);
      assert.deepEqual(await Promise.all([first, second]), [true, true]);
      await settle();
      await new Promise((resolve) => setTimeout(resolve, 100)); // a sweep that could still close it (Redis)
      assert.equal(hooks.length, 1, `one hook, got ${JSON.stringify(hooks)}`);
      assert.equal(closes.length, 1);
      assert.equal(await engine.closeSession(id), false, 'the id is unknown once closed');
      assert.equal(hooks.length, 1);
      assert.deepEqual(errors, []);
    } finally {
      await engine.stop();
    }
  });

  test(`${name}: case 8, a timed-out session's still-valid cookie gets a new id and a fresh context (deviation: the spec keeps the id)`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const { engine, errors, closes } = engineOn({ ...choice.options, clock, inactiveProcessTimeoutMs: MINUTE, inactiveSessionTimeoutMs: 60 * MINUTE });
    try {
      const lease = await engine.acquire({ sessionId: undefined, ip: IP });
      lease.proc.vars.n = 5;
      lease.release();
      assert.ok(await allIdle(engine));
      clock.advance(MINUTE + 1_000);
      assert.ok(await eventually(() => closes.length === 1, 3_000), 'timed out');
      assert.equal(closes[0]?.reason, 'timeout');
      const next = await engine.acquire({ sessionId: lease.sessionId, ip: IP });
      assert.notEqual(next.sessionId, lease.sessionId);
      assert.equal(next.proc.vars.n, 0, 'init ran again');
      next.release();
      assert.deepEqual(errors, []);
    } finally {
      await engine.stop();
    }
  });

  test(`${name}: case 10, a close asked from another session's request clears no cookie on that request's response; the closed id gets a new session`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const { engine, errors } = engineOn({ ...choice.options, clock: new ManualClock() });
    const server = await startServer(engine, async (req, res, proc) => {
      const target = new URL(req.url ?? '/', 'http://x').searchParams.get('close');
      const closed = target === null ? null : await engine.closeSession(target);
      res.end(JSON.stringify({ sid: proc.sessionId, closed }));
    });
    try {
      const a = sessionIdOf(await request(server.url));
      const b = sessionIdOf(await request(server.url));
      assert.ok(a && b && a !== b);
      assert.ok(await allIdle(engine));
      const byB = await request(server.url, { path: `/?close=${a}`, cookie: `4DSID=${b}` });
      assert.deepEqual(JSON.parse(byB.body), { sid: b, closed: true });
      assert.equal(byB.setCookies.length, 1);
      assert.equal(sessionIdOf(byB), b, "b's response carries b's own cookie, not a clearing one");
      assert.doesNotMatch(byB.setCookies[0] ?? '', /Max-Age=0/i);
      const backA = await request(server.url, { cookie: `4DSID=${a}` });
      const newA = sessionIdOf(backA);
      assert.ok(newA && newA !== a && newA !== b, 'the closed id got a new session');
      assert.deepEqual(errors, []);
    } finally {
      await engine.stop();
      await server.close();
    }
  });

  test(`${name}: case 11, sessionExpiration is a Date for a live id and null for an unknown or closed one`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const { engine, errors } = engineOn({ ...choice.options, clock, inactiveSessionTimeoutMs: MINUTE });
    try {
      const startedAt = clock.now();
      const id = await visit(engine);
      assert.deepEqual(engine.sessionExpiration(id), new Date(startedAt + MINUTE));
      assert.equal(engine.sessionExpiration('0f8fad5b-d9cb-469f-a165-70867728950e'), null);
      assert.ok(await allIdle(engine));
      assert.equal(await engine.closeSession(id), true);
      assert.equal(engine.sessionExpiration(id), null);
      assert.deepEqual(errors, []);
    } finally {
      await engine.stop();
    }
  });

  test(`${name}: case 13, a request refused for its IP (400) restarts neither the cookie expiry nor the idle clock`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const timeout = 10 * MINUTE;
    const { engine, errors, closes } = engineOn({ ...choice.options, clock, inactiveProcessTimeoutMs: timeout, inactiveSessionTimeoutMs: timeout });
    try {
      const startedAt = clock.now();
      const id = await visit(engine);
      assert.ok(await allIdle(engine));
      clock.advance(timeout / 2);
      await assert.rejects(engine.acquire({ sessionId: id, ip: OTHER_IP }), { code: 'ERR_SESSION_IP_MISMATCH', httpStatus: 400 });
      assert.deepEqual(engine.sessionExpiration(id), new Date(startedAt + timeout), 'the cookie expiry did not move');
      assert.equal(engine.sessions().find((s) => s.id === id)?.lastActivityAt.getTime(), startedAt);
      // Due at startedAt + timeout, not at the refused request + timeout.
      clock.advance(timeout / 2 + 1_100);
      // Redis: a sweep still on its way when the clock moved is followed by the next one, a second later.
      for (let i = 0; i < 10 && !(await eventually(() => closes.length === 1, 200)); i++) clock.advance(1_000);
      assert.equal(closes.length, 1, 'timed out at its first deadline (within seconds of it, not half a timeout later)');
      assert.deepEqual(closes.map((e) => [e.sessionId, e.reason]), [[id, 'timeout']]);
      assert.deepEqual(errors, []);
    } finally {
      await engine.stop();
    }
  });

  test(`${name}: case 14, maxSessions above maxConcurrentProcesses is clamped: it reads back clamped and the clamped cap is the one a newcomer meets`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const { engine } = engineOn({ ...choice.options, clock: new ManualClock(), maxSessions: 100, maxConcurrentProcesses: 10 });
    const held: Array<{ release(): void }> = [];
    try {
      assert.equal(engine.getOption('maxSessions'), 10);
      for (let i = 0; i < 10; i++) held.push(await engine.acquire({ sessionId: undefined, ip: IP }));
      const refused = await engine.acquire({ sessionId: undefined, ip: IP }).then((lease) => { held.push(lease); return undefined; }, (error: unknown) => error);
      assert.equal((refused as SessionError | undefined)?.code, 'ERR_SESSION_LIMIT');
      assert.equal((refused as SessionError).httpStatus, 503);
    } finally {
      for (const lease of held) lease.release();
      await engine.stop();
    }
  });
}
