// A logout on x from a request whose session y is closing (y's close waiting for that very request),
// the reply of x's claim lost with its connection: the claim changed nothing in Redis ('closing'), so
// there is nothing for x's repair to run and nothing to hand over. The logout fails at once (503, as any
// call whose reply was lost) instead of waiting for a sweep or a lease, and the hook is not lost: y's
// close hooks the request once it ends, with the state it saved.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type RequestLease, type SessionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { track } from './engine-harness.js';
import { eventually } from './helpers.js';
import { loseNextReply } from './lost-replies-support.js';
import { redisForTest } from './redis-support.js';
import { closingInRedis, IP, node, stopAll, type Vars } from './redis-crossing.js';

test('redis: a logout whose claim reply is lost while another node closes the session fails at once (503), and that close hooks the request once it ends, with what it saved', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const x = await node(r, clock);
  const yClient = await r.client();
  const hooked: { pid: string; vars: Vars }[] = [];
  const y = new SessionEngine<Vars>({
    clock, closeTimeoutMs: 10_000, onClose: (proc) => { hooked.push({ pid: proc.processId, vars: { ...proc.vars } }); },
    store: createRedisStore({ redis: yClient, prefix: r.prefix, pollIntervalMs: 5, sweepIntervalMs: 1_000 }),
  });
  const yErrors: SessionError[] = [];
  y.on('error', (e) => yErrors.push(e));
  const leases: (RequestLease<Vars> | undefined)[] = [];
  let outside: ReturnType<typeof track<boolean>> | undefined;
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(a);
    const id = a.sessionId;
    a.proc.vars.cart = 'full';
    outside = track(y.closeSession(id));
    assert.ok(await closingInRedis(r, id), 'y claimed the close');
    loseNextReply(x.client, 'lwsClaim');
    const logout = track(a.run(() => x.engine.closeSession(x.engine.currentSessionId())));
    // No clock moves: nothing here may wait for a sweep, a lease or closeTimeoutMs.
    assert.ok(await eventually(() => logout.settled, 3_000), 'the logout returns');
    assert.equal((logout.error as { code?: string } | undefined)?.code, 'ERR_SESSION_STORE_UNAVAILABLE');
    assert.equal(outside.settled, false, 'y\'s close still waits for the request');
    a.proc.vars.after = 'logout failed';
    a.release();
    assert.ok(await eventually(() => outside!.settled, 5_000), 'y\'s close ends once the request has ended');
    assert.equal(outside.value, true);
    assert.deepEqual(hooked, [{ pid: a.proc.processId, vars: { cart: 'full', after: 'logout failed' } }], 'one hook, with the state the request saved');
    assert.deepEqual(yErrors.map((e) => e.code), [], 'no drain timeout');
  } finally {
    await stopAll(clock, leases, outside, x);
    await y.stop();
  }
});
