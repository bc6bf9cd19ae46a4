// A request or task a close stopped waiting for (closeTimeoutMs), on the node that runs the close: the
// same on both stores. Its hook sees it live (what its request wrote, the locks it holds), and once the
// close promise resolves it is torn down (vars reset, lock calls refused), also when the node learns of
// the close's end other than by its own 'x' message (a join that polled, a message delayed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type RequestLease } from '../src/index.js';
import { track } from './engine-harness.js';
import { eventually, settle } from './helpers.js';
import { storeChoices } from './store-choices.js';
import { HeldMessages, IP, node, stopAll, type Vars, closingInRedis, settledAsTimePasses } from './redis-crossing.js';
import { redisForTest } from './redis-support.js';

for (const [name, choose] of storeChoices()) {
  test(`${name}: once closeSession resolved on the node that ran the close, its straggler request is torn down and cannot lock`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const engine = new SessionEngine<Vars>({ clock, closeTimeoutMs: 10_000, ...choice.options });
    const a = await engine.acquire({ sessionId: undefined, ip: IP });
    a.proc.vars.user = 'alice';
    // What the straggler is when the close promise resolves (its continuation, not a later poll).
    const closing = track(engine.closeSession(a.sessionId).then(async () => {
      const seen = { closed: a.proc.closed, vars: { ...a.proc.vars } };
      const lock = await a.proc.locks.tryLock('Stock', 42).catch((e: { code?: string }) => e.code);
      return { ...seen, lock };
    }));
    try {
      assert.ok(await settledAsTimePasses(clock, closing), 'the close gave up on the request and finished');
      assert.deepEqual(closing.value, { closed: true, vars: {}, lock: 'ERR_SESSION_CLOSED' });
    } finally {
      a.release();
      clock.advance(60_000);
      await engine.stop();
    }
  });
}

test('Redis store: the closing node\'s own x delayed (pub/sub): the straggler of the close it ran is torn down once closeSession resolved, and cannot lock', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const held = new HeldMessages('x ');
  const x = await node(r, clock, { held });
  const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
  let closing: ReturnType<typeof track<boolean>> | undefined;
  try {
    a.proc.vars.user = 'alice';
    held.on = true;
    closing = track(x.engine.closeSession(a.sessionId));
    assert.ok(await settledAsTimePasses(clock, closing!), 'the close gave up on the request and finished');
    const lock = await a.proc.locks.tryLock('Stock', 42).catch((e: { code?: string }) => e.code);
    assert.deepEqual({ closed: a.proc.closed, vars: a.proc.vars, lock }, { closed: true, vars: {}, lock: 'ERR_SESSION_CLOSED' },
      `closeSession resolved on the node that ran it; lock key ${JSON.stringify(await r.redis.hgetall(`${r.prefix}lock:5:Stock:number:42`))}`);
  } finally {
    held.deliver();
    await stopAll(clock, [a], closing, x);
  }
});

test('Redis store: closeSession on x joins y\'s close (its x lost): once it resolves on x, x\'s straggler of that session is torn down', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const held = new HeldMessages('x ');
  const x = await node(r, clock, { held });
  const y = await node(r, clock);
  const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
  let closing: ReturnType<typeof track<boolean>> | undefined;
  let joined: ReturnType<typeof track<unknown>> | undefined;
  try {
    a.proc.vars.user = 'alice';
    held.on = true;
    closing = track(y.engine.closeSession(a.sessionId));
    assert.ok(await closingInRedis(r, a.sessionId), 'y claimed the close');
    joined = track(x.engine.closeSession(a.sessionId).then(async () => {
      const lock = await a.proc.locks.tryLock('Stock', 42).catch((e: { code?: string }) => e.code);
      return { closed: a.proc.closed, vars: { ...a.proc.vars }, lock };
    }));
    assert.ok(await settledAsTimePasses(clock, joined!), 'x\'s closeSession resolved');
    assert.deepEqual(joined.value, { closed: true, vars: {}, lock: 'ERR_SESSION_CLOSED' });
  } finally {
    held.deliver();
    await stopAll(clock, [a], closing, x, y);
  }
});

for (const [name, choose] of storeChoices()) {
  test(`${name}: onClose of a straggler request on the node running the close sees what the request wrote and the locks it holds`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const seen: unknown[] = [];
    const engine = new SessionEngine<Vars>({ clock, closeTimeoutMs: 10_000, ...choice.options,
      onClose: (proc) => { seen.push({ vars: { ...proc.vars }, locks: proc.locks.held().length }); } });
    const first = await engine.acquire({ sessionId: undefined, ip: IP });
    first.proc.vars.cart = 1;
    first.release(); // the next request gets the process once this release has landed
    const a = await engine.acquire({ sessionId: first.sessionId, ip: IP });
    a.proc.vars.cart = 3;
    assert.equal(await a.proc.locks.tryLock('Stock', 42), true);
    const closing = track(engine.closeSession(a.sessionId));
    try {
      assert.ok(await settledAsTimePasses(clock, closing), 'the close gave up on the request and finished');
      assert.deepEqual(seen, [{ vars: { cart: 3 }, locks: 1 }]);
    } finally {
      a.release();
      clock.advance(60_000);
      await engine.stop();
    }
  });
}

async function logout(engine: SessionEngine<Vars>, lease: RequestLease<Vars>): Promise<unknown> {
  return lease.run(async () => {
    await engine.closeSession(engine.currentSessionId());
    const lock = await lease.proc.locks.tryLock('Other', 1).catch((e: { code?: string }) => e.code);
    return { closed: lease.proc.closed, vars: { ...lease.proc.vars }, held: lease.proc.locks.held().length, lock };
  });
}

const EXPECTED = { closed: true, vars: {}, held: 0, lock: 'ERR_SESSION_CLOSED' };

test('memory store: a logout while an outside close waits for the request: the handler continues with a reset context', { timeout: 10_000 }, async () => {
  const clock = new ManualClock();
  const hooked: unknown[] = [];
  const engine = new SessionEngine<Vars>({ clock, closeTimeoutMs: 10_000, onClose: (p) => { hooked.push({ ...p.vars }); } });
  const a = await engine.acquire({ sessionId: undefined, ip: IP });
  a.proc.vars.user = 'alice';
  await a.proc.locks.tryLock('Stock', 42);
  const outside = track(engine.closeSession(a.sessionId));
  await settle(5);
  assert.deepEqual(await logout(engine, a), EXPECTED);
  assert.deepEqual(hooked, [{ user: 'alice' }]);
  a.release();
  await eventually(() => outside.settled);
  await engine.stop();
});

test('Redis store: a logout on x while y\'s close waits for the request: the handler continues with a reset context', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const x = await node(r, clock);
  const y = await node(r, clock);
  const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
  let outside: ReturnType<typeof track<boolean>> | undefined;
  try {
    a.proc.vars.user = 'alice';
    await a.proc.locks.tryLock('Stock', 42);
    outside = track(y.engine.closeSession(a.sessionId));
    assert.ok(await closingInRedis(r, a.sessionId), 'y claimed the close');
    const after = await logout(x.engine, a);
    const hookedYet = y.hooked.length;
    assert.deepEqual({ ...(after as object), hookedYet }, { ...EXPECTED, hookedYet: 1 });
    a.release();
    await settle(50);
    assert.deepEqual([...x.errors, ...y.errors].map((e) => e.code), []);
    assert.equal((await r.redis.keys(`${r.prefix}lock:*`)).length, 0);
  } finally {
    await stopAll(clock, [a], outside, x, y);
  }
});

test('Redis store: a logout on x not awaited while y\'s close waits for the request: the close hooks the state as the logout left it, and the request ending later saves nothing and reports nothing', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const hooked: unknown[] = [];
  const x = await node(r, clock);
  const yClient = await r.client();
  const { createRedisStore } = await import('../src/redis/index.js');
  const y = new SessionEngine<Vars>({ clock, closeTimeoutMs: 10_000, onClose: (p) => { hooked.push({ ...p.vars }); }, store: createRedisStore({ redis: yClient, prefix: r.prefix, pollIntervalMs: 5, sweepIntervalMs: 1_000 }) });
  const yErrors: string[] = [];
  y.on('error', (e) => yErrors.push(e.code));
  const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
  let outside: ReturnType<typeof track<boolean>> | undefined;
  try {
    a.proc.vars.user = 'alice';
    outside = track(y.closeSession(a.sessionId));
    assert.ok(await closingInRedis(r, a.sessionId), 'y claimed the close');
    a.run(() => { void x.engine.closeSession(x.engine.currentSessionId()); });
    assert.ok(await eventually(() => hooked.length === 1, 5_000), 'y hooked the process as the logout left it, the request still running');
    assert.deepEqual(hooked, [{ user: 'alice' }]);
    a.proc.vars.after = 'written after the logout, before the request ended';
    a.release(); // saves nothing: its state went to the close
    assert.ok(await eventually(() => outside!.settled, 5_000), 'y\'s close ended');
    await settle(50);
    assert.deepEqual([...x.errors.map((e) => e.code), ...yErrors], [], 'no write reported fenced, nothing else');
  } finally {
    await stopAll(clock, [a], outside, x);
    await y.stop();
  }
});
