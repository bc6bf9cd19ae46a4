// A timeout raised at run time on the Redis store (README, "Running on more than one machine": "A timeout
// raised at run time gives the open sessions' keys and their locks the new lifetime at once (the node
// that raised it walks them with ZSCAN …)"). Another node that has not heard of the raise yet (its 'o'
// message on its way, or lost in a subscriber cut: it reads the options again once back) still writes
// the old key lifetime with its releases and enters, after the walk: the session's key then expires by
// the old timeout, and the sweep times the session out once its key is about to expire ("whatever the
// clocks say"), long before its raised timeout. Found by the Redis option-change soak (redisopts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../src/index.js';
import { eventually, poll } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { HeldMessages, IP, node } from './redis-crossing.js';

const HOUR = 3_600_000;

test('redis: inactiveProcessTimeoutMs raised on node x while node y has not heard of it yet: a release on y after x\'s walk does not give the session\'s key back its old, shorter lifetime', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const held = new HeldMessages('o ');
  const x = await node(r, clock);
  const y = await node(r, clock, { held });
  try {
    x.engine.setOption('inactiveSessionTimeoutMs', 10_000);
    x.engine.setOption('inactiveProcessTimeoutMs', 10_000);
    assert.ok(await eventually(() => y.engine.getOption('inactiveProcessTimeoutMs') === 10_000 && y.engine.getOption('inactiveSessionTimeoutMs') === 10_000, 2_000));
    const lease = await y.engine.acquire({ sessionId: undefined, ip: IP });
    const key = `${r.prefix}s:${lease.sessionId}`;
    assert.ok(await r.redis.pttl(key) <= 10_000 + 60_000, 'the key lives the timeout and graceMs');
    held.on = true; // y does not hear of the raise yet
    x.engine.setOption('inactiveProcessTimeoutMs', HOUR);
    assert.equal(await poll(async () => (await r.redis.pttl(key) > HOUR ? undefined : 'not walked yet'), 5_000), undefined, 'x walks the open sessions: the key lives the raised timeout');
    lease.release(); // y's release, its options still the old ones
    assert.ok(await eventually(async () => (await r.redis.hget(key, 'la')) !== null && (await r.redis.zscore(`${r.prefix}idle`, lease.sessionId)) !== null, 5_000), 'released');
    held.deliver();
    assert.ok(await eventually(() => y.engine.getOption('inactiveProcessTimeoutMs') === HOUR, 2_000), 'y heard of it');
    await new Promise((resolve) => setTimeout(resolve, 100));
    const left = await r.redis.pttl(key);
    assert.ok(left > HOUR, `the idle session's key keeps the raised lifetime (it has ${left} ms left: the sweep would time the session out when about ${60_000 / 2} ms are left, a minute or so from now by Redis's clock, not in an hour)`);
  } finally {
    held.deliver();
    await Promise.all([x.engine.stop(), y.engine.stop()]);
  }
});

test('redis: inactiveProcessTimeoutMs raised to an hour on node x while node y had not heard of it: the session y released is not timed out by the sweep a few seconds later (its key about to expire by the old lifetime)', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock(); // moves with real time below (the sweeps run on it): 3.5 s, no timeout of an hour is due
  const held = new HeldMessages('o ');
  // Keys live the timeout plus 2 s; the sweep (every 200 ms) times out an idle session whose key has 1 s left.
  const x = await node(r, clock, { graceMs: 2_000, sweepIntervalMs: 200 });
  const y = await node(r, clock, { held, graceMs: 2_000, sweepIntervalMs: 200 });
  const closed: string[] = [];
  for (const n of [x, y]) n.engine.on('close', (event) => closed.push(event.reason));
  try {
    x.engine.setOption('inactiveSessionTimeoutMs', 1_000);
    x.engine.setOption('inactiveProcessTimeoutMs', 1_000);
    assert.ok(await eventually(() => y.engine.getOption('inactiveProcessTimeoutMs') === 1_000 && y.engine.getOption('inactiveSessionTimeoutMs') === 1_000, 2_000));
    const lease = await y.engine.acquire({ sessionId: undefined, ip: IP });
    const key = `${r.prefix}s:${lease.sessionId}`;
    held.on = true;
    x.engine.setOption('inactiveProcessTimeoutMs', HOUR);
    assert.equal(await poll(async () => (await r.redis.pttl(key) > HOUR ? undefined : 'not walked yet'), 5_000), undefined);
    lease.release();
    assert.ok(await eventually(async () => (await r.redis.zscore(`${r.prefix}idle`, lease.sessionId)) !== null, 5_000), 'released');
    held.deliver();
    for (let i = 0; i < 35; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      clock.advance(100);
    }
    assert.deepEqual(closed, [], `the session lives: its timeout is an hour, 3.5 s have passed (closed: ${closed.join(', ')})`);
    assert.equal(await r.redis.hget(key, 'st'), 'o');
  } finally {
    held.deliver();
    await Promise.all([x.engine.stop(), y.engine.stop()]);
  }
});
