// messages.ts checkKnown, once a node's subscriber is back from a cut, must tell the node what the lost
// 'c' and 'x' would have told it, as those messages would (test/redis-resubscribe.test.ts has the plain
// cases): a close another node announced before the cut ('c' heard) whose 'x' was lost has its straggler
// here torn down; and an enter that landed just before a close claimed during the cut, its reply read
// after the check forgot the session's idle handle, still hears the close (a 'c' heard records the close
// as under way: closeAnnounced, which RedisRequestPath #handle asks).
import { once } from 'node:events';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RequestLease } from '../src/index.js';
import { track } from './engine-harness.js';
import { eventually } from './helpers.js';
import { holdEnterReplies, idleInRedis, IP, settledAsTimePasses, withDeafNode, type Vars } from './redis-crossing.js';

test('redis: a straggler whose node heard the close\'s c but lost its x (subscriber cut meanwhile) is torn down once the subscriber is back', { timeout: 20_000 }, async (t) => {
  await withDeafNode(t, async (nodes) => {
    const { r, clock, x, y, leases } = nodes;
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(a);
    a.proc.vars.cart = 'full';
    const id = a.sessionId;
    const closing = track(y.engine.closeSession(id));
    nodes.closing = closing;
    assert.ok(await eventually(() => a.proc.signal.aborted, 5_000), 'x heard the c');
    x.deaf = true; // its x is lost
    assert.ok(await settledAsTimePasses(clock, closing), 'the close gave up on the request and finished');
    assert.equal(await r.redis.exists(`${r.prefix}s:${id}`), 0, 'the session left Redis');
    assert.equal(a.proc.closed, false, 'x did not hear the x: the straggler still runs live');
    const subscriber = x.subscriber();
    const back = once(subscriber, 'ready');
    subscriber.disconnect(true);
    await back;
    x.deaf = false;
    assert.ok(await eventually(() => a.proc.closed, 3_000), 'torn down once x\'s subscriber is back');
    assert.deepEqual(a.proc.vars, {});
  });
});

test('redis: a request whose enter landed just before a close claimed during the cut, its reply read after the check forgot the idle handle, hears that close', { timeout: 20_000 }, async (t) => {
  await withDeafNode(t, async (nodes) => {
    const { r, x, y, leases } = nodes;
    const first = await x.engine.acquire({ sessionId: undefined, ip: IP });
    const id = first.sessionId;
    first.release();
    assert.ok(await idleInRedis(r, id));
    x.deaf = true;
    const held = holdEnterReplies(x.client);
    const entering = track(x.engine.acquire({ sessionId: id, ip: IP }));
    await held.sent;
    assert.ok(await eventually(async () => (await r.redis.hget(`${r.prefix}s:${id}`, 'b:r1')) !== '0', 5_000), 'the enter landed');
    const closing = track(y.engine.closeSession(id));
    nodes.closing = closing;
    assert.ok(await eventually(async () => (await r.redis.hget(`${r.prefix}s:${id}`, 'st')) === 'c', 5_000), 'y claimed the close (x deaf to its c)');
    const subscriber = x.subscriber();
    const back = once(subscriber, 'ready');
    subscriber.disconnect(true);
    // Deaf until it is back: a c still on its way on the old connection at the cut is lost too.
    await back;
    x.deaf = false;
    assert.ok(await eventually(() => x.engine.sessions().length === 0, 3_000), 'the check forgot the idle handle');
    held.deliver();
    assert.ok(await eventually(() => entering.settled, 5_000));
    const lease = entering.value as RequestLease<Vars>;
    leases.push(lease);
    assert.equal(lease.sessionId, id, 'the request entered the closing session (its enter landed first)');
    assert.equal(lease.proc.signal.aborted, true, 'it hears the close, as with a c heard');
    assert.equal(closing.settled, false, 'the close waits for it');
  });
});
