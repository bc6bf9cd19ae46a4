// Closes that cross an enter, a claim or an announcement (helpers and method: test/redis-crossing.ts).
// A request whose enter Redis ran just before a close's claim holds a process the close waits for, so
// it must be told to stop (signal aborted, cookie cleared) like the requests already running; else the
// close waits until that request ends on its own, and with a ManualClock it never does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type RequestLease } from '../src/index.js';
import { track } from './engine-harness.js';
import { deferred, eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { claimAnswered, HeldMessages, holdEnterReplies, idleInRedis, IP, node, stopAll, wrapScript, type Vars } from './redis-crossing.js';

test('from inside: a logout claims the close while another request of the session has entered (processesPerSession 2): that request is told to stop, the logout ends, both processes are hooked', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const x = await node(r, clock, { processesPerSession: 2 });
  let a: RequestLease<Vars> | undefined;
  let b: RequestLease<Vars> | undefined;
  let logout: ReturnType<typeof track<boolean>> | undefined;
  try {
    const first = await x.engine.acquire({ sessionId: undefined, ip: IP });
    first.release();
    a = await x.engine.acquire({ sessionId: first.sessionId, ip: IP });
    const hold = holdEnterReplies(x.client);
    const claimed = claimAnswered(x.client);
    const entering = x.engine.acquire({ sessionId: first.sessionId, ip: IP });
    await hold.sent;
    logout = track(a.run(() => x.engine.closeSession(x.engine.currentSessionId())));
    await claimed;
    hold.deliver();
    b = await entering; // Redis ran its enter first: it has the session's second process
    assert.equal(b.sessionId, first.sessionId);
    assert.equal(b.proc.signal.aborted, true, 'work that starts in a session whose close has started is told to stop');
    assert.equal(b.cookie().action, 'clear');
    b.release();
    assert.ok(await eventually(() => logout!.settled, 5_000), 'the close does not wait forever for a request nobody told');
    assert.equal(logout.value, true);
    assert.deepEqual([...x.hooked].sort(), [a.proc.processId, b.proc.processId].sort());
  } finally {
    await stopAll(clock, [a, b], logout, x);
  }
  assert.deepEqual(x.errors.map((e) => e.message), []);
});

// From outside, with nothing else of the session running on the node where the request enters: the
// close runs on that node (its claim answered first) or on another (its announcement heard first).
for (const closer of ['this node', 'another node'] as const) {
  test(`from outside, closed by ${closer}, the enter's reply read after the close started there: the request is told to stop at once and its cookie is cleared; the close ends once it does`, { timeout: 20_000 }, async (t) => {
    const r = await redisForTest(t);
    if (r === undefined) return;
    const clock = new ManualClock();
    const x = await node(r, clock);
    const y = closer === 'this node' ? x : await node(r, clock);
    let b: RequestLease<Vars> | undefined;
    let closing: ReturnType<typeof track<boolean>> | undefined;
    try {
      const first = await x.engine.acquire({ sessionId: undefined, ip: IP });
      first.release();
      assert.ok(await idleInRedis(r, first.sessionId));
      assert.notEqual(x.engine.sessionExpiration(first.sessionId), null);
      const hold = holdEnterReplies(x.client);
      const claimed = claimAnswered(y.client);
      const entering = x.engine.acquire({ sessionId: first.sessionId, ip: IP });
      await hold.sent;
      closing = track(y.engine.closeSession(first.sessionId));
      await claimed;
      // x has claimed the close, or heard of it (its view of the session is gone), before it reads the reply.
      assert.ok(await eventually(() => x.engine.sessionExpiration(first.sessionId) === null, 5_000), 'x knows of the close');
      hold.deliver();
      b = await entering;
      if (b.sessionId === first.sessionId) {
        assert.equal(b.proc.signal.aborted, true, `the request hears of the close ${closer} runs`);
        assert.equal(b.cookie().action, 'clear');
        assert.equal(closing.settled, false, 'the close waits for the request');
        b.release();
        assert.ok(await eventually(() => closing!.settled, 5_000));
        assert.equal(closing.value, true);
        assert.deepEqual([...x.hooked, ...(y === x ? [] : y.hooked)], [b.proc.processId]);
      } else {
        // Under load the enter, sent before the claim, can run in Redis after it: it finds the session
        // closing and the request goes on in a new session, which is right too (the old id is dead). It
        // is not asked to stop, and the close does not wait for it.
        assert.equal(b.proc.signal.aborted, false, 'a new session is not closing');
        assert.equal(b.cookie().action, 'set');
        assert.ok(await eventually(() => closing!.settled, 5_000));
        assert.equal(closing.value, true);
        assert.deepEqual([...x.hooked, ...(y === x ? [] : y.hooked)], [first.proc.processId]);
        b.release();
      }
    } finally {
      await stopAll(clock, [b], closing, ...(y === x ? [x] : [x, y]));
    }
    assert.deepEqual([...x.errors, ...(y === x ? [] : y.errors)].map((e) => e.message), []);
  });
}

test("closeSession on a node whose claim finds another node closing the session, that close's end ('x') read before the claim's reply: true at once, not at the next poll", { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const seen = new HeldMessages();
  // x polls a minute apart: a wait that missed the end it had already heard would last that long.
  const x = await node(r, clock, { held: seen, pollIntervalMs: 60_000 });
  const y = await node(r, clock);
  let a: RequestLease<Vars> | undefined;
  let closed: ReturnType<typeof track<boolean>> | undefined;
  try {
    a = await y.engine.acquire({ sessionId: undefined, ip: IP });
    const running = a;
    const id = a.sessionId;
    const closingOnY = y.engine.closeSession(id); // from outside: waits for the request
    assert.ok(await eventually(async () => (await r.redis.hget(`${r.prefix}s:${id}`, 'st')) === 'c', 5_000));
    // x's claim finds y's close under way; its reply is read only once x has heard that close end.
    wrapScript(x.client, 'lwsClaim', (claim) => async (...args) => {
      const reply = await claim(...args);
      running.release();
      await eventually(() => seen.seen.includes(`x ${id}`), 5_000);
      return reply;
    });
    closed = track(x.engine.closeSession(id));
    assert.ok(await eventually(() => closed!.settled, 5_000), 'the wait for the other node\'s close knows it has ended');
    assert.equal(closed.value, true);
    assert.equal(await closingOnY, true);
    assert.deepEqual(y.hooked, [running.proc.processId]);
    assert.deepEqual(x.hooked, []);
  } finally {
    a?.release();
    if (closed?.settled !== true) clock.advance(60_000);
    await Promise.all([x.engine.stop(), y.engine.stop()]);
  }
  assert.deepEqual([...x.errors, ...y.errors].map((e) => e.message), []);
});

test("a claim that fails on a Redis error while another node's close of the session is announced: the handle stays closing (the running request's cookie is cleared), the caller gets ERR_SESSION_STORE_UNAVAILABLE", { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const seen = new HeldMessages();
  const x = await node(r, clock, { held: seen });
  const y = await node(r, clock);
  let a: RequestLease<Vars> | undefined;
  try {
    a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    const id = a.sessionId;
    let closingOnY: Promise<boolean> | undefined;
    // x's claim never reaches Redis: y's close is claimed and heard by x meanwhile, then the call fails.
    wrapScript(x.client, 'lwsClaim', () => async () => {
      closingOnY = y.engine.closeSession(id);
      await eventually(() => seen.seen.includes(`c ${id}`), 5_000);
      throw new Error('connection lost');
    });
    await assert.rejects(x.engine.closeSession(id), { code: 'ERR_SESSION_STORE_UNAVAILABLE' });
    assert.equal(a.proc.signal.aborted, true, "y's close reached the running request");
    assert.equal(a.cookie().action, 'clear', 'the failed claim does not give the closing session back its cookie');
    a.release();
    assert.equal(await closingOnY, true);
    assert.deepEqual(y.hooked, [a.proc.processId]);
  } finally {
    a?.release();
    await Promise.all([x.engine.stop(), y.engine.stop()]);
  }
  assert.deepEqual(y.errors.map((e) => e.message), []);
  assert.deepEqual(x.errors.map((e) => e.message), [], 'the caller hears of the failure, not the error event');
});

test("an init that fails while its session closes: the close hooks only the processes that had a context (the failed one leaves the session, as on the memory store)", { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const initDone = deferred<Vars>();
  let inits = 0;
  const x = await node(r, clock, { processesPerSession: 2, init: () => (++inits === 1 ? {} : initDone.promise) });
  let a: RequestLease<Vars> | undefined;
  let closing: ReturnType<typeof track<boolean>> | undefined;
  try {
    a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    const entering = x.engine.acquire({ sessionId: a.sessionId, ip: IP }); // a second process, its init pending
    entering.catch(() => {});
    assert.ok(await eventually(() => inits === 2, 5_000));
    closing = track(x.engine.closeSession(a.sessionId));
    a.release();
    initDone.reject(new Error('database down'));
    await assert.rejects(entering, { code: 'ERR_SESSION_INIT_FAILED' });
    assert.ok(await eventually(() => closing!.settled, 5_000), 'the close ends');
    assert.equal(closing.value, true);
    assert.deepEqual(x.hooked, [a.proc.processId]);
    assert.deepEqual(x.errors.map((e) => e.code), ['ERR_SESSION_INIT_FAILED']);
  } finally {
    await stopAll(clock, [a], closing, x);
  }
});

test("a node that missed a close's messages (a subscriber reconnect) drops its stale view of the session at the next request with its cookie: sessions() and sessionExpiration() no longer show it", { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const held = new HeldMessages('c ', 'x ');
  const x = await node(r, clock, { held });
  const y = await node(r, clock);
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    a.release();
    assert.ok(await idleInRedis(r, a.sessionId));
    held.on = true; // x hears nothing of the close
    assert.equal(await y.engine.closeSession(a.sessionId), true);
    assert.deepEqual(x.engine.sessions().map((s) => s.id), [a.sessionId], 'x still believes it open (it heard nothing)');
    const next = await x.engine.acquire({ sessionId: a.sessionId, ip: IP });
    assert.notEqual(next.sessionId, a.sessionId, 'a closed id gets a new session');
    next.release();
    assert.deepEqual(x.engine.sessions().map((s) => s.id), [next.sessionId], 'the stale view of the closed session is gone');
    assert.equal(x.engine.sessionExpiration(a.sessionId), null);
    assert.equal(x.engine.sessionProcessCount(a.sessionId), 0);
  } finally {
    held.deliver();
    await stopAll(clock, [], undefined, x, y);
  }
});
