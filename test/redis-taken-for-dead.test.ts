// A node that another node's sweep takes for dead while it is in fact alive (stalled past two leases: a
// stopped process, a long GC or VM pause, a cut from Redis) wakes with replies Redis gave before the
// sweep (src/redis/node-lease.ts). Two things must not follow: a hook of a close the sweep took over and
// finished elsewhere starting here (a hook runs twice only if it was running when the node was taken
// for dead: docs/redis.md, "Liveness and takeover"), and the node's running requests going on as if
// their processes were still theirs without a word (their signals abort, the operator hears it once).
// The stall is made, not waited for: the node's heartbeats are held, its lease key is removed and its
// absence dated a lease back, as a sweep would have seen it; one reply is held across the takeover.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, SessionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { redisLockKey, type RedisLockManager } from '../src/redis/locks.js';
import { eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { IP, idleInRedis, lookDead, wrapScript, type Vars } from './redis-crossing.js';
import { LEASE_MS, realDelay, sweepUntil, withTwoNodes } from './redis-stall.js';

test('redis: a node taken for dead while its close waited for a reply, the close taken over and finished elsewhere, starts none of the remaining hooks when it wakes', { timeout: 20_000 }, (t) => withTwoNodes(t, async ({ r, x, y }) => {
  // A session of two processes on x, both idle.
  const first = await x.engine.acquire({ sessionId: undefined, ip: IP });
  const second = await x.engine.acquire({ sessionId: first.sessionId, ip: IP });
  const id = first.sessionId;
  assert.notEqual(first.proc.processId, second.proc.processId, 'two processes');
  const xNode = (await r.redis.hget(`${r.prefix}s:${id}`, `o:${first.proc.processId}`))!;
  first.release();
  second.release();
  assert.ok(await idleInRedis(r, id), 'both processes free in Redis');

  // x's close hooks its first process; Redis marks it hooked, and x stalls before it reads that reply.
  let markedFirst!: () => void;
  const firstMarked = new Promise<void>((resolve) => { markedFirst = resolve; });
  let letReplyThrough!: () => void;
  const replyHeld = new Promise<void>((resolve) => { letReplyThrough = resolve; });
  let held = false;
  wrapScript(x.client, 'lwsHooked', (hookedScript) => async (...args) => {
    const reply = await hookedScript(...args);
    if (!held) {
      held = true;
      x.stall();
      markedFirst();
      await replyHeld;
    }
    return reply;
  });
  const closing = x.engine.closeSession(id);
  await firstMarked;
  assert.equal(x.hooked.length, 1, 'x hooked one process before it stalled');

  // y's sweep takes x for dead, takes the close over, hooks the other process and finishes.
  await lookDead(r, xNode, LEASE_MS);
  assert.ok(await sweepUntil(y, async () => (await r.redis.exists(`${r.prefix}s:${id}`)) === 0), 'y finished the close');
  assert.equal(y.hooked.length, 1, 'y hooked the process x had not');

  // x wakes more than a lease after its last answered beat: the reply it held says its mark landed.
  await realDelay(LEASE_MS + 50);
  letReplyThrough();
  assert.equal(await Promise.race([closing, realDelay(5_000).then(() => 'still waiting')]), true, 'the close call on x ends: the session closed');
  const hooks = [...x.hooked, ...y.hooked];
  assert.equal(new Set(hooks).size, 2, 'both processes hooked');
  assert.equal(hooks.length, 2, `each hooked once (x: ${x.hooked.join(', ')}; y: ${y.hooked.join(', ')})`);
}));

test('redis: a node taken for dead while a request runs learns it at its next beat: the request\'s signal aborts (ERR_SESSION_WRITE_FENCED), its lock calls are refused, and it is reported once', { timeout: 20_000 }, (t) => withTwoNodes(t, async ({ r, x, y, leases }) => {
  const running = await x.engine.acquire({ sessionId: undefined, ip: IP });
  leases.push(running);
  assert.equal(await running.proc.locks.tryLock('T', 1), true);
  const { signal } = running.proc;
  const xNode = (await r.redis.hget(`${r.prefix}s:${running.sessionId}`, `o:${running.proc.processId}`))!;
  x.stall();
  await lookDead(r, xNode, LEASE_MS);
  assert.ok(await sweepUntil(y, async () => (await r.redis.hget(`${r.prefix}s:${running.sessionId}`, `b:${running.proc.processId}`)) === '0'), "y's sweep freed x's process");
  assert.equal(signal.aborted, false, 'x cannot know yet');

  x.wake();
  assert.ok(await eventually(() => signal.aborted, 5_000), 'the signal aborts once a beat tells x');
  assert.ok(signal.reason instanceof SessionError && signal.reason.code === 'ERR_SESSION_WRITE_FENCED', String(signal.reason));
  const told = x.errors.filter((e) => e.code === 'ERR_SESSION_WRITE_FENCED' && e.message.includes('taken for dead'));
  assert.equal(told.length, 1, 'said once');
  assert.match(told[0]!.message, /1 request\(s\)/);
  assert.deepEqual(y.errors.map((e) => e.code), [], 'y, never taken for dead, hears nothing of it');

  // A request on y has the process the sweep freed: the same process id, its record lock with it. x's
  // run, going on, must not take or give back locks in that process's name.
  const onY = await y.engine.acquire({ sessionId: running.sessionId, ip: IP });
  leases.push(onY);
  assert.equal(onY.proc.processId, running.proc.processId, 'the same process, now on y');
  await assert.rejects(running.proc.locks.tryLock('T', 2), (error: SessionError) => error.code === 'ERR_SESSION_CLOSED');
  assert.equal(await running.proc.locks.unlock('T', 1), false, "x's run leaves the process's lock alone");
  assert.equal((await onY.proc.locks.lockedBy('T', 1))?.processId, running.proc.processId, 'the lock is still the process\'s');
  onY.release();

  // The request ends: its release is fenced (the process was freed), its changes not saved.
  running.proc.vars.lost = true;
  running.release();
  assert.ok(await eventually(() => x.errors.some((e) => e.code === 'ERR_SESSION_WRITE_FENCED' && !e.message.includes('taken for dead')), 5_000), 'its release was refused');
  const after = await y.engine.acquire({ sessionId: running.sessionId, ip: IP });
  assert.equal(after.sessionId, running.sessionId, 'the session lives on');
  assert.equal(after.proc.vars.lost, undefined, 'the fenced request saved nothing');
  after.release();
}));

test('redis: before any beat tells a node taken for dead, its running request cannot take or give back locks in the name of its process, now another node\'s request\'s: Redis fences the lock calls by the process token', { timeout: 20_000 }, (t) => withTwoNodes(t, async ({ r, x, y, leases }) => {
  const running = await x.engine.acquire({ sessionId: undefined, ip: IP });
  leases.push(running);
  assert.equal(await running.proc.locks.tryLock('T', 1), true, 'unfenced while the process is the run\'s');
  assert.equal(await running.proc.locks.unlock('T', 1), true);
  assert.equal(await running.proc.locks.tryLock('T', 1), true);
  const xNode = (await r.redis.hget(`${r.prefix}s:${running.sessionId}`, `o:${running.proc.processId}`))!;
  x.stall(); // x beats no more: nothing tells it of the sweep below
  await lookDead(r, xNode, LEASE_MS);
  assert.ok(await sweepUntil(y, async () => (await r.redis.hget(`${r.prefix}s:${running.sessionId}`, `b:${running.proc.processId}`)) === '0'), "y's sweep freed x's process");
  const onY = await y.engine.acquire({ sessionId: running.sessionId, ip: IP });
  leases.push(onY);
  assert.equal(onY.proc.processId, running.proc.processId, 'the same process, now on y');
  assert.equal(await onY.proc.locks.tryLock('T', 2), true, "y's request locks a record");

  assert.equal(running.proc.signal.aborted, false, 'x has not heard yet');
  await assert.rejects(running.proc.locks.tryLock('T', 3), (error: SessionError) => error.code === 'ERR_SESSION_CLOSED', "x's run takes no record");
  assert.equal(await r.redis.exists(redisLockKey(r.prefix, { table: 'T', key: 3 })), 0, 'nothing written');
  assert.equal(await running.proc.locks.unlock('T', 2), false, "x's run frees no record of y's request");
  assert.equal((await onY.proc.locks.lockedBy('T', 2))?.processId, onY.proc.processId, "y's lock stands");
  assert.equal(await running.proc.locks.unlock('T', 1), false, 'nor one the process took before the stall');
  assert.equal(await onY.proc.locks.unlock('T', 2), true, "y's request, the process's run now, locks as before");
  assert.equal(await onY.proc.locks.tryLock('T', 3), true);
}));

test('redis: lock calls of a request follow its session to the id regenerate gave it, on the node that renamed it and on another', { timeout: 20_000 }, (t) => withTwoNodes(t, async ({ r, x, y, leases }) => {
  const onX = await x.engine.acquire({ sessionId: undefined, ip: IP });
  leases.push(onX);
  const oldId = onX.sessionId;
  const pid = onX.proc.processId;
  assert.equal(await onX.proc.locks.tryLock('R', 1), true);
  const newId = await x.engine.regenerate(oldId);
  assert.ok(newId !== null && newId !== oldId);
  assert.equal(onX.proc.sessionId, newId, 'the run is under the new id');
  assert.equal(await onX.proc.locks.tryLock('R', 2), true, 'after the rename');
  // A fenced call still naming the old id (sent before its node heard of a rename made elsewhere) follows
  // P mv:<old> to the process's token; a stale token is refused there too.
  const token = (await r.redis.hget(`${r.prefix}s:${newId}`, `b:${pid}`))!;
  const locks = x.engine.lockManager as RedisLockManager;
  const owner = { sessionId: oldId, processId: pid };
  assert.equal(await locks.tryLock(owner, { table: 'R', key: 3 }, { sessionId: oldId, token }), true, 'the old id followed');
  await assert.rejects(locks.tryLock(owner, { table: 'R', key: 4 }, { sessionId: oldId, token: `${token}0` }), (error: SessionError) => error.code === 'ERR_SESSION_CLOSED');
  assert.equal(await locks.unlock(owner, { table: 'R', key: 3 }, { sessionId: oldId, token: `${token}0` }), false, 'a stale token frees nothing');
  assert.equal(await locks.unlock(owner, { table: 'R', key: 3 }, { sessionId: oldId, token }), true);
  assert.equal(await onX.proc.locks.unlock('R', 1), true);
  onX.release();
  assert.ok(await idleInRedis(r, newId as string), 'its release landed');
  const onY = await y.engine.acquire({ sessionId: newId as string, ip: IP });
  leases.push(onY);
  assert.equal(onY.proc.processId, onX.proc.processId, 'the same process, now on y');
  assert.equal(await onY.proc.locks.unlock('R', 2), true, 'on another node under the new id');
}));

test('redis: a spawn whose reply is read while the node is in doubt about its lease runs no task: it fails as with a lost reply', { timeout: 20_000 }, (t) => withTwoNodes(t, async ({ x, leases }) => {
  const running = await x.engine.acquire({ sessionId: undefined, ip: IP });
  leases.push(running);
  // The spawn runs in Redis; x stalls before it reads the reply, and reads it more than a lease later.
  let letReplyThrough!: () => void;
  const replyHeld = new Promise<void>((resolve) => { letReplyThrough = resolve; });
  let spawnRan!: () => void;
  const spawned = new Promise<void>((resolve) => { spawnRan = resolve; });
  wrapScript(x.client, 'lwsSpawn', (spawn) => async (...args) => {
    const reply = await spawn(...args);
    x.stall();
    spawnRan();
    await replyHeld;
    return reply;
  });
  let taskRan = false;
  running.proc.spawn('report', async () => { taskRan = true; });
  await spawned;
  await realDelay(LEASE_MS + 50);
  letReplyThrough();
  assert.ok(await eventually(() => x.errors.some((e) => e.code === 'ERR_SESSION_TASK_FAILED'), 5_000), `the task failed: ${x.errors.map((e) => e.code).join(', ')}`);
  const failed = x.errors.find((e) => e.code === 'ERR_SESSION_TASK_FAILED')!;
  assert.equal((failed.cause as SessionError | undefined)?.code, 'ERR_SESSION_STORE_UNAVAILABLE');
  assert.equal(taskRan, false, 'the task never ran');
}));

test('redis: a node that left cleanly, swept as dead by another, leaves no mark for a beat that will never come', { timeout: 20_000 }, (t) => withTwoNodes(t, async ({ r, x, y }) => {
  const onX = await x.engine.acquire({ sessionId: undefined, ip: IP });
  const xNode = (await r.redis.hget(`${r.prefix}s:${onX.sessionId}`, `o:${onX.proc.processId}`))!;
  onX.release();
  (await y.engine.acquire({ sessionId: undefined, ip: IP })).release();
  assert.equal(await r.redis.sismember(`${r.prefix}nodes`, xNode), 1, 'x registered');
  await x.engine.stop(); // onStop 'auto', y alive: x leaves, its sessions kept
  assert.ok(await sweepUntil(y, async () => (await r.redis.sismember(`${r.prefix}nodes`, xNode)) === 0), "y's sweep took x, gone, off the node list");
  assert.equal(await r.redis.exists(`${r.prefix}swept:${xNode}`), 0, 'no swept mark for a node that left');
}));

test('redis: a node whose beats failed for more than a lease (an outage) beats as soon as its connection is ready again: its first request is served, not refused in doubt', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  // A node of its own, its beats wrapped only here and not in an async function: the beat's reply reaches
  // the store as directly as an unwrapped one's (the order of the two continuations below depends on it).
  const client = await r.client();
  const listenersBefore = { ready: client.listenerCount('ready'), close: client.listenerCount('close') };
  const engine = new SessionEngine<Vars>({ clock: new ManualClock(), closeTimeoutMs: 5_000, store: createRedisStore({ redis: client, prefix: r.prefix, nodeLeaseMs: 3_000, pollIntervalMs: 5 }) });
  let stopped = false;
  try {
    (await engine.acquire({ sessionId: undefined, ip: IP })).release(); // started; a beat every second from now
    let failing = true;
    wrapScript(client, 'lwsHeartbeat', (beat) => (...args) => (failing ? Promise.reject(new Error('connection lost')) : beat(...args)));
    await realDelay(3_100); // no beat answered for a lease: in doubt
    failing = false;
    client.emit('ready'); // the connection is back (as ioredis says after a reconnect)
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    assert.equal(lease.sessionId.length, 36, 'served');
    lease.release();
    await engine.stop();
    stopped = true;
    // The application's client may serve stores made later: the stopped one keeps no listener on it.
    assert.deepEqual({ ready: client.listenerCount('ready'), close: client.listenerCount('close') }, listenersBefore);
  } finally {
    if (!stopped) await engine.stop();
  }
});
