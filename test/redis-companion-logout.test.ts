// A logout from a request that runs under a companion handle (its session was regenerated on another node
// while it ran, and a request with the new id reached this node before it heard of the rename), while
// another node closes the session: handed over as from any request (docs/redis.md "A close").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../src/index.js';
import { eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { closingInRedis, HeldMessages, IP, node, runAsCompanion, stopAll } from './redis-crossing.js';

test('a logout from a companion\'s request while another node closes the session hands the request over: that close ends without waiting for closeTimeoutMs, and the logout returns once it has', { timeout: 30_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const held = new HeldMessages('N ', 'n ');
  const x = await node(r, clock, { held, processesPerSession: 2 });
  const y = await node(r, clock, { processesPerSession: 2 });
  let a: Awaited<ReturnType<typeof x.engine.acquire>> | undefined;
  const closing = { settled: false };
  try {
    a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    const running = a;
    const { newId } = await runAsCompanion(r, x, y, held, a.sessionId);
    assert.ok(await eventually(() => running.sessionId === newId, 5_000), 'x hears of the rename');
    // y closes the session: its drain waits for x's request.
    const closed = y.engine.closeSession(newId).finally(() => { closing.settled = true; });
    assert.ok(await closingInRedis(r, newId));
    running.proc.vars.n = 42;
    let loggedOut = false;
    const logout = running.run(() => x.engine.closeSession(running.sessionId)).finally(() => { loggedOut = true; });
    // No clock movement: the close ends because the request's state was handed over, not at closeTimeoutMs.
    assert.ok(await eventually(() => closing.settled, 5_000), "y's close ends without waiting for closeTimeoutMs");
    assert.equal(await closed, true);
    assert.equal(await logout, true);
    assert.ok(loggedOut);
    assert.equal(y.hooked.length, 2);
    running.release();
    a = undefined;
  } finally {
    held.deliver();
    await stopAll(clock, [a], closing, x, y);
  }
  assert.deepEqual([...x.errors, ...y.errors].map((e) => e.message), []);
});
