// Requests of one node waiting for a session that closes go on in one new session: the first makes it,
// the others join it (src/redis/entry.ts, successors). Here the session was regenerated on another node
// and then closed, and this node hears of the rename while its first waiter's enter (under the old id)
// is on its way. Found by a soak of the Redis store: the successor was filed under the old id, never
// cleared (one map entry per such crossing, for ever) and missed by the other waiter, which made a
// second new session.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type RequestLease } from '../src/index.js';
import { eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { HeldMessages, IP, closingInRedis, holdEnterReplies, node, stopAll, type Vars } from './redis-crossing.js';

test('two waiters of a session regenerated elsewhere and closed, the rename heard while the first one\'s enter is on its way: both go on in one new session', { timeout: 30_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const held = new HeldMessages('N ', 'n ');
  // Waiters on x try again on a release only (no poll within the test), so each enter is one the test makes.
  const x = await node(r, clock, { held, pollIntervalMs: 60_000 });
  const y = await node(r, clock);
  const leases: (RequestLease<Vars> | undefined)[] = [];
  let closing: { settled: boolean } | undefined;
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(a);
    const oldId = a.sessionId;
    const first = x.engine.acquire({ sessionId: oldId, ip: IP });
    const second = x.engine.acquire({ sessionId: oldId, ip: IP });
    assert.ok(await eventually(async () => (await r.redis.zcard(`${r.prefix}wq:${oldId}`)) === 2, 5_000), 'both wait on x, counted in Redis');
    // y regenerates the session (x does not hear of it yet) and closes it under its new id: the close
    // waits for a's request.
    held.on = true;
    const newId = await y.engine.regenerate(oldId);
    assert.equal(typeof newId, 'string');
    assert.ok(await eventually(() => held.count > 0, 5_000), 'x got the rename (held)');
    const close = { settled: false };
    closing = close;
    const closed = y.engine.closeSession(newId!).finally(() => { close.settled = true; });
    assert.ok(await closingInRedis(r, newId!), 'the close is claimed');
    // a's release wakes the first waiter, whose enter (under the old id) runs in Redis: 'unknown'. x hears
    // of the rename before it reads that reply.
    const enters = holdEnterReplies(x.client);
    a.release();
    await enters.sent;
    held.deliver();
    enters.deliver();
    const b = await first;
    leases.push(b);
    assert.notEqual(b.sessionId, oldId);
    assert.notEqual(b.sessionId, newId, 'the first waiter is in a new session');
    b.release();
    const c = await second;
    leases.push(c);
    assert.equal(c.sessionId, b.sessionId, 'the second waiter joined the first one\'s new session (one browser, one session)');
    c.release();
    assert.equal(await closed, true);
  } finally {
    await stopAll(clock, leases, closing, x, y);
  }
});
