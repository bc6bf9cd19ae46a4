// Pub/sub messages sent while a node's subscriber was cut are lost. A request of that node that its
// session's close stopped waiting for (closeTimeoutMs) would then hear neither the close ('c') nor its end
// ('x'), and run live in the closed session to its end (its vars kept, lock calls allowed); an option
// set on another node ('o') would never apply here. Once the subscriber is back, the node checks in Redis
// the sessions it runs work of (messages.ts checkRunning: a close it missed is heard, one that ended is
// torn down as if 'x' had come, as the memory store tears down its stragglers) and reads the cluster's
// options again; tried until it runs through, as a cut seldom takes the subscriber alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { track } from './engine-harness.js';
import { collected, eventually } from './helpers.js';
import { idleInRedis, IP, settledAsTimePasses, withDeafNode } from './redis-crossing.js';

test('redis: a straggler whose node lost both the close\'s c and x (its subscriber cut meanwhile) is torn down once the subscriber is back: signal aborted, vars reset, lock calls refused', { timeout: 20_000 }, async (t) => {
  await withDeafNode(t, async (nodes) => {
    const { r, clock, x, y, leases } = nodes;
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(a);
    a.proc.vars.cart = 'full';
    const id = a.sessionId;
    x.deaf = true;
    const closing = track(y.engine.closeSession(id));
    nodes.closing = closing;
    assert.ok(await settledAsTimePasses(clock, closing), 'the close gave up on the request and finished');
    assert.equal(await r.redis.exists(`${r.prefix}s:${id}`), 0, 'the session left Redis');
    assert.equal(a.proc.closed, false, 'x heard nothing: the straggler still runs live');
    x.subscriber().disconnect(true); // cut, and back
    x.deaf = false;
    assert.ok(await eventually(() => a.proc.closed, 5_000), 'torn down once x\'s subscriber is back');
    assert.equal(a.proc.signal.aborted, true);
    assert.deepEqual(a.proc.vars, {});
    await assert.rejects(a.proc.locks.tryLock('Stock', 42), { code: 'ERR_SESSION_CLOSED' });
  });
});

test('redis: a straggler whose node lost the close\'s c and x is torn down once both its connections are back, the command connection back after the subscriber', { timeout: 20_000 }, async (t) => {
  // As the store's own client (createRedisStore({ url })): commands fail at once while disconnected.
  // It reconnects 300 ms after a cut, its subscriber 20 ms after.
  await withDeafNode(t, async (nodes) => {
    const { clock, x, y, leases } = nodes;
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(a);
    a.proc.vars.cart = 'full';
    const id = a.sessionId;
    x.deaf = true;
    const closing = track(y.engine.closeSession(id));
    nodes.closing = closing;
    assert.ok(await settledAsTimePasses(clock, closing), 'the close gave up on the request and finished');
    assert.equal(a.proc.closed, false, 'x heard nothing: the straggler still runs live');
    // Both connections cut (a Redis restart, a blip), each back on its own schedule.
    const subscriber = x.subscriber();
    x.client.disconnect(true);
    subscriber.disconnect(true);
    x.deaf = false;
    assert.ok(await eventually(() => x.client.status === 'ready' && subscriber.status === 'ready', 5_000), 'both connections are back');
    assert.ok(await eventually(() => a.proc.closed, 3_000), 'torn down once x\'s connections are back');
    assert.deepEqual(a.proc.vars, {});
  }, { enableOfflineQueue: false, retryStrategy: () => 300 });
});

test('redis: a request whose node lost the close\'s c (its subscriber cut meanwhile) hears the close once the subscriber is back: its signal aborts while the close still waits for it', { timeout: 20_000 }, async (t) => {
  await withDeafNode(t, async (nodes) => {
    const { r, x, y, leases } = nodes;
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(a);
    const id = a.sessionId;
    x.deaf = true;
    const closing = track(y.engine.closeSession(id));
    nodes.closing = closing;
    assert.ok(await eventually(async () => (await r.redis.hget(`${r.prefix}s:${id}`, 'st')) === 'c', 5_000), 'y claimed the close');
    assert.equal(a.proc.signal.aborted, false, 'x heard nothing');
    x.subscriber().disconnect(true);
    x.deaf = false;
    assert.ok(await eventually(() => a.proc.signal.aborted, 5_000), 'the request hears the close once x\'s subscriber is back');
    assert.equal(a.proc.closed, false, 'it is not torn down: the close still waits for it');
    assert.equal(closing.settled, false);
    a.release();
    assert.ok(await eventually(() => closing!.settled, 5_000), 'the close ends once the request does');
    assert.equal(closing.value, true);
  });
});

test('redis: an option another node set while this node\'s subscriber was cut applies here once the subscriber is back', { timeout: 20_000 }, async (t) => {
  await withDeafNode(t, async (nodes) => {
    const { r, x, y } = nodes;
    (await x.engine.acquire({ sessionId: undefined, ip: IP })).release();
    x.deaf = true;
    y.engine.setOption('maxSessions', 7);
    assert.ok(await eventually(async () => (await r.redis.hget(`${r.prefix}opts`, 'maxSessions')) === '7', 5_000), 'y wrote it');
    assert.notEqual(x.engine.getOption('maxSessions'), 7, 'x heard nothing');
    const subscriber = x.subscriber();
    subscriber.disconnect(true);
    x.deaf = false;
    assert.ok(await eventually(() => subscriber.status === 'ready', 5_000));
    assert.ok(await eventually(() => x.engine.getOption('maxSessions') === 7, 3_000), 'x applies the option once its subscriber is back');
  });
});

test('redis: an option this node set itself earlier, set again by another node while this node\'s subscriber was cut, applies here once the subscriber is back', { timeout: 20_000 }, async (t) => {
  await withDeafNode(t, async (nodes) => {
    const { r, x, y } = nodes;
    (await x.engine.acquire({ sessionId: undefined, ip: IP })).release();
    x.engine.setOption('maxSessions', 5);
    assert.ok(await eventually(() => y.engine.getOption('maxSessions') === 5, 3_000), 'y applies x\'s value');
    x.deaf = true;
    y.engine.setOption('maxSessions', 7);
    assert.ok(await eventually(async () => (await r.redis.hget(`${r.prefix}opts`, 'maxSessions')) === '7', 5_000), 'y wrote it');
    // Whatever x's subscriber had read already is handed over (and lost) before the cut.
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(x.engine.getOption('maxSessions'), 5, 'x heard nothing');
    const subscriber = x.subscriber();
    subscriber.disconnect(true);
    x.deaf = false;
    assert.ok(await eventually(() => subscriber.status === 'ready', 5_000));
    assert.ok(await eventually(() => x.engine.getOption('maxSessions') === 7, 3_000), 'x applies the cluster\'s value once its subscriber is back, as it would have on hearing y');
  });
});

test('redis: sessions another node closed while this node\'s subscriber was cut are forgotten here once it is back (listed no more, handles collected), not only at a request with their id', { timeout: 30_000 }, async (t) => {
  await withDeafNode(t, async (nodes) => {
    const { r, x, y } = nodes;
    // Sessions served by x (it knows them and keeps a copy of their state), and one that stays open.
    const served: { id: string; ref: WeakRef<object> }[] = [];
    for (let i = 0; i < 4; i++) {
      const lease = await x.engine.acquire({ sessionId: undefined, ip: IP });
      lease.proc.vars.n = i;
      served.push({ id: lease.sessionId, ref: new WeakRef(lease.session as object) });
      lease.release();
      assert.ok(await idleInRedis(r, lease.sessionId));
    }
    const kept = served.pop()!;
    assert.equal(x.engine.sessions().length, 4);
    x.deaf = true;
    for (const { id } of served) assert.equal(await y.engine.closeSession(id), true);
    assert.equal(x.engine.sessions().length, 4, 'x heard nothing');
    const subscriber = x.subscriber();
    subscriber.disconnect(true);
    x.deaf = false;
    assert.ok(await eventually(() => x.engine.sessions().length === 1, 5_000), `x forgot the closed sessions (still lists ${x.engine.sessions().length})`);
    assert.deepEqual(x.engine.sessions().map((s) => s.id), [kept.id], 'an open session stays known');
    // Collected, but for the last closed one: the last operations that touched it can keep it
    // referenced (bounded: one, however many closes were missed).
    const alive: number[] = [];
    for (const [i, { ref }] of served.slice(0, -1).entries()) if (!(await collected(ref, 2_000))) alive.push(i);
    assert.deepEqual(alive, [], 'the closed sessions\' handles are collected');
  });
});
