// A logout (closeSession of the caller's own session, from inside its request) whose request ends before
// the logout returns: on the memory store the caller's process object is torn down by the time the
// logout resolves true (closed, vars reset), whichever ended first. On the Redis store the same must hold
// when the request ends while the logout's claim is on its way to Redis (found by the stragglers
// property under load: "logout ... resolved true, its caller not torn down (closed false, w 1)").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type RequestLease, type SessionEngineOptions } from '../src/index.js';
import { track } from './engine-harness.js';
import { closingInRedis, IP, node, stopAll, type Vars as CrossingVars } from './redis-crossing.js';
import { createRedisStore } from '../src/redis/index.js';
import { eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';

type Vars = { w?: number };

async function logoutThenEnd(options: SessionEngineOptions<Vars>): Promise<{ closed: boolean; proc: { closed: boolean; w: number | undefined }; hooks: (number | undefined)[] }> {
  const hooks: (number | undefined)[] = [];
  const engine = new SessionEngine<Vars>({ ...options, clock: new ManualClock(), onClose: (proc) => { hooks.push(proc.vars.w); } });
  try {
    const lease = await engine.acquire({ sessionId: undefined, ip: '10.0.0.1' });
    lease.proc.vars.w = 1;
    // The handler starts the logout and its request ends before the logout returns (a handler that does
    // not await it, or an adapter that releases once the response is sent).
    const logout = lease.run(() => engine.closeSession(engine.currentSessionId()));
    lease.release();
    const closed = await logout;
    return { closed, proc: { closed: lease.proc.closed, w: lease.proc.vars.w }, hooks };
  } finally {
    await engine.stop();
  }
}

test('memory store: a logout whose request ends before it returns tears the caller down', async () => {
  const seen = await logoutThenEnd({});
  assert.deepEqual(seen, { closed: true, proc: { closed: true, w: undefined }, hooks: [1] });
});

test('Redis store: a logout whose request ends while its claim is on its way tears the caller down, as on the memory store', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const seen = await logoutThenEnd({ store: createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: 5 }) });
  assert.deepEqual(seen, { closed: true, proc: { closed: true, w: undefined }, hooks: [1] });
});

test('Redis store: a logout whose request ends while its claim is on its way, another node closing the session, returns once that close has ended, the caller torn down', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const x = await node(r, clock);
  const y = await node(r, clock);
  const leases: RequestLease<CrossingVars>[] = [];
  let outside: ReturnType<typeof track<boolean>> | undefined;
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(a);
    a.proc.vars.cart = 'full';
    outside = track(y.engine.closeSession(a.sessionId));
    assert.ok(await closingInRedis(r, a.sessionId), 'y claimed the close, which waits for the request');
    const logout = a.run(() => x.engine.closeSession(x.engine.currentSessionId()));
    a.release();
    const closed = await logout;
    const hookedThen = [...y.hooked];
    assert.equal(closed, true);
    assert.deepEqual(hookedThen, [a.proc.processId], 'the logout resolved true once the close had hooked the process (not at once)');
    assert.deepEqual({ closed: a.proc.closed, vars: { ...a.proc.vars } }, { closed: true, vars: {} }, 'the caller is torn down');
    assert.ok(await eventually(() => outside!.settled, 5_000), 'the close from outside ends');
    assert.equal(outside.value, true);
    assert.deepEqual(y.hooked, [a.proc.processId], 'one hook');
  } finally {
    await stopAll(clock, leases, outside, x, y);
  }
});

test('Redis store: a logout whose request ends while its claim is on its way, a close from outside on the same node claimed just before, returns once that close has ended, the caller torn down', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const x = await node(r, clock);
  const leases: RequestLease<CrossingVars>[] = [];
  let outside: ReturnType<typeof track<boolean>> | undefined;
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(a);
    a.proc.vars.cart = 'full';
    outside = track(x.engine.closeSession(a.sessionId));
    const logout = a.run(() => x.engine.closeSession(x.engine.currentSessionId()));
    a.release();
    const closed = await logout;
    const hookedThen = [...x.hooked];
    assert.equal(closed, true);
    assert.deepEqual(hookedThen, [a.proc.processId], 'the logout resolved true once the close had hooked the process (not at once)');
    assert.deepEqual({ closed: a.proc.closed, vars: { ...a.proc.vars } }, { closed: true, vars: {} }, 'the caller is torn down');
    assert.ok(await eventually(() => outside!.settled, 5_000), 'the close from outside ends');
    assert.equal(outside.value, true);
    assert.deepEqual(x.hooked, [a.proc.processId], 'one hook');
  } finally {
    await stopAll(clock, leases, outside, x);
  }
});
