// Stragglers on the Redis store (see test/redis-stragglers.test.ts) and a node's stop(): it waits for
// this node's work torn down on 'x' and for a handed-over request's end (its lock freed before it
// resolves), returns a handed-over logout, and a close heard during its heartbeat stays heard.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type RequestLease } from '../src/index.js';
import { track } from './engine-harness.js';
import { eventually, settle } from './helpers.js';
import { createRedisStore } from '../src/redis/index.js';
import { redisForTest } from './redis-support.js';
import { HeldMessages, holdEnterReplies, IP, node, stopAll, wrapScript, type Vars, closingInRedis, settledAsTimePasses } from './redis-crossing.js';

test('stop() waits for a request of this node torn down on x (its handler still running)', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const held = new HeldMessages('x ');
  const x = await node(r, clock, { held, onStop: 'keep' });
  const y = await node(r, clock);
  const leases: (RequestLease<Vars> | undefined)[] = [];
  let closing: ReturnType<typeof track<boolean>> | undefined;
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(a);
    held.on = true;
    closing = track(y.engine.closeSession(a.sessionId));
    assert.ok(await settledAsTimePasses(clock, closing!));
    held.deliver();
    assert.ok(await eventually(() => a.proc.closed, 5_000), 'torn down on x');
    const stopping = track(x.engine.stop());
    await settle(200);
    const stoppedEarly = stopping.settled;
    a.release();
    await settle(200);
    assert.deepEqual({ stoppedEarly, errors: x.errors.map((e) => `${e.code}: ${e.message}`) }, { stoppedEarly: false, errors: [] },
      'stop() returned while a request of this node still ran');
  } finally {
    await stopAll(clock, leases, closing, x, y);
  }
});

test('a close heard during stop()\'s heartbeat is not undone on the handle (onStop auto, others alive)', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const held = new HeldMessages('c ', 'x ');
  const x = await node(r, clock, { held, onStop: 'auto' });
  const leases: (RequestLease<Vars> | undefined)[] = [];
  let closing: ReturnType<typeof track<boolean>> | undefined;
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP }); // x started alone: it saw no other node
    leases.push(a);
    const y = await node(r, clock);
    await y.engine.acquire({ sessionId: undefined, ip: IP }).then((l) => l.release()); // y has joined
    held.on = true;
    closing = track(y.engine.closeSession(a.sessionId));
    assert.ok(await settledAsTimePasses(clock, closing!));
    wrapScript(x.client, 'lwsHeartbeat', (beat) => async (...args) => { held.deliver(); return beat(...args); });
    const stopping = track(x.engine.stop());
    await settle(100);
    const state = { closed: a.proc.closed, cookie: a.cookie().action };
    a.release();
    assert.ok(await eventually(() => stopping.settled, 5_000));
    await y.engine.stop();
    assert.deepEqual(state, { closed: true, cookie: 'clear' }, 'the closed session\'s straggler response sets its dead cookie again');
  } finally {
    await stopAll(clock, leases, closing, x);
  }
});

test('a close claimed (c) during stop()\'s heartbeat is not undone on the handle (onStop auto, others alive)', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const held = new HeldMessages('c ');
  const x = await node(r, clock, { held, onStop: 'auto' });
  const leases: (RequestLease<Vars> | undefined)[] = [];
  let closing: ReturnType<typeof track<boolean>> | undefined;
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP }); // x started alone: it saw no other node
    leases.push(a);
    const y = await node(r, clock);
    await y.engine.acquire({ sessionId: undefined, ip: IP }).then((l) => l.release()); // y has joined
    held.on = true;
    closing = track(y.engine.closeSession(a.sessionId));
    assert.ok(await closingInRedis(r, a.sessionId));
    wrapScript(x.client, 'lwsHeartbeat', (beat) => async (...args) => { held.deliver(); return beat(...args); });
    const stopping = track(x.engine.stop());
    await settle(100);
    const state = { cookie: a.cookie().action };
    a.release();
    assert.ok(await eventually(() => closing!.settled, 5_000));
    assert.ok(await eventually(() => stopping.settled, 5_000));
    await y.engine.stop();
    assert.deepEqual(state, { cookie: 'clear' }, 'the closed session\'s straggler response sets its dead cookie again');
  } finally {
    await stopAll(clock, leases, closing, x);
  }
});

test('stop() still waits for a straggler torn down on x after a second straggler\'s enter reply of that session is read', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const seen = new HeldMessages();
  const x = await node(r, clock, { held: seen, processesPerSession: 2, onStop: 'keep' });
  const y = await node(r, clock);
  const leases: (RequestLease<Vars> | undefined)[] = [];
  let closing: ReturnType<typeof track<boolean>> | undefined;
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(a);
    const id = a.sessionId;
    const hold = holdEnterReplies(x.client);
    const entering = track(x.engine.acquire({ sessionId: id, ip: IP }));
    await hold.sent; // Redis ran the enter before the claim: its process is busy
    closing = track(y.engine.closeSession(id));
    assert.ok(await settledAsTimePasses(clock, closing!), 'the close gave up and finished');
    assert.ok(await eventually(() => seen.seen.includes(`x ${id}`), 5_000), 'x heard the close end');
    assert.ok(await eventually(() => a.proc.closed, 5_000), 'a torn down on x (its handle kept: a still runs)');
    hold.deliver();
    assert.ok(await eventually(() => entering.settled, 5_000));
    entering.value?.release();
    await settle(50);
    const stopping = track(x.engine.stop());
    await settle(200);
    const stoppedEarly = stopping.settled;
    a.release();
    await settle(200);
    assert.equal(stoppedEarly, false, 'stop() returned while a request of this node still ran');
  } finally {
    await stopAll(clock, leases, closing, x, y);
  }
});

test('stop() on x (its store\'s own client, from url) while a handed-over logout waits for y\'s close: the logout returns', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const yClock = new ManualClock();
  // x as an application makes it: the store connects (and, at stop, quits) a client of its own.
  const xEngine = new SessionEngine<Vars>({ clock, closeTimeoutMs: 10_000, processesPerSession: 2, store: createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: 5, sweepIntervalMs: 1_000, onStop: 'keep' }) });
  xEngine.on('error', () => {});
  const y = await node(r, yClock, { processesPerSession: 2, onStop: 'keep' });
  let a: RequestLease<Vars> | undefined;
  let b: RequestLease<Vars> | undefined;
  let outside: ReturnType<typeof track<boolean>> | undefined;
  try {
    a = await xEngine.acquire({ sessionId: undefined, ip: IP });
    const id = a.sessionId;
    b = await y.engine.acquire({ sessionId: id, ip: IP }); // a second process, busy on y: y's drain waits for it
    outside = track(y.engine.closeSession(id));
    assert.ok(await closingInRedis(r, id), 'y claimed the close');
    const logout = track(a.run(() => xEngine.closeSession(xEngine.currentSessionId())));
    await settle(50);
    assert.equal(logout.settled, false, 'the logout waits for y\'s close');
    const stopping = track(xEngine.stop());
    assert.ok(await eventually(() => { clock.advance(5_000); return stopping.settled; }, 5_000), 'x stopped');
    b.release();
    assert.ok(await eventually(() => outside!.settled, 5_000), 'y\'s close ended');
    assert.ok(await eventually(() => logout.settled, 3_000), 'the logout on the stopped node never returned (its handler hangs)');
  } finally {
    b?.release();
    a?.release();
    yClock.advance(60_000);
    clock.advance(60_000);
    await y.engine.stop();
    await xEngine.stop();
  }
});

test('x stops while a handed-over request\'s end waits for y\'s close (x missed its x): a lock the request tries to take after y\'s teardown is refused, and none is left after x\'s stop resolves', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const held = new HeldMessages('x ');
  const x = await node(r, clock, { held, pollIntervalMs: 1_000, onStop: 'keep' });
  const y = await node(r, clock, { onStop: 'keep' });
  let a: RequestLease<Vars> | undefined;
  let outside: ReturnType<typeof track<boolean>> | undefined;
  try {
    a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    const id = a.sessionId;
    outside = track(y.engine.closeSession(id));
    assert.ok(await closingInRedis(r, id), 'y claimed the close');
    held.on = true;
    a.run(() => { void x.engine.closeSession(x.engine.currentSessionId()); }); // handed over
    assert.ok(await eventually(() => outside!.settled, 5_000), 'y\'s close ended (x has not heard its x)');
    await assert.rejects(a.proc.locks.tryLock('Stock', 42), { code: 'ERR_SESSION_CLOSED' }, 'the request, still running, cannot take a lock after y\'s teardown (fenced in Redis)');
    a.release();
    await settle(5);
    await x.engine.stop();
    const errorsAtStop = x.errors.length;
    await x.client.quit(); // the application quits its client once stop() has resolved
    await new Promise((resolve) => setTimeout(resolve, 1_500)); // x's poll would have been due
    const locks = await r.redis.keys(`${r.prefix}lock:*`);
    assert.deepEqual(locks, [], `lock left after x stopped; x errors after its stop: ${x.errors.slice(errorsAtStop).map((e) => `${e.code} ${e.message}`).join('; ')}`);
  } finally {
    held.deliver();
    a?.release();
    await y.engine.stop();
  }
});
