// Replies a node never reads (the connection cut after Redis ran the script, before its answer came
// back): the node itself repairs what they left, at its next sweeps, instead of waiting to die. A lost
// enter's process is freed with the state last saved (its session was wedged for as long as the node
// lived); a lost claim's close is run, its hook once. Work the node runs meanwhile is never touched.
// A lost reply is made by wrapping the store's script on a client the test owns: the script runs in
// Redis, then the call fails as a cut connection makes it fail.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { eventually } from './helpers.js';
import { idleSession, loseNextReply, lostSpawn, pastTheGrace, withNode } from './lost-replies-support.js';
import { idleInRedis, IP, wrapScript, type Script } from './redis-crossing.js';


test("an enter whose reply is lost: the request gets 503, the process it took is freed by the node's next sweeps (the session is served again with its state); a request running meanwhile keeps its process", { timeout: 20_000 }, (t) => withNode(t, async (r, x, clock) => {
  const running = await x.engine.acquire({ sessionId: undefined, ip: IP });
  try {
    const a = await idleSession(r, x, { n: 1 });
    loseNextReply(x.client, 'lwsEnterManyBuffer');
    await assert.rejects(x.engine.acquire({ sessionId: a.sessionId, ip: IP }), { code: 'ERR_SESSION_STORE_UNAVAILABLE' });
    const pid = a.proc.processId;
    assert.notEqual(await r.redis.hget(`${r.prefix}s:${a.sessionId}`, `b:${pid}`), '0', 'the lost enter took the process');
    await pastTheGrace(clock);
    assert.ok(await eventually(async () => (await r.redis.hget(`${r.prefix}s:${a.sessionId}`, `b:${pid}`)) === '0', 5_000), 'freed by the repair');
    const again = await x.engine.acquire({ sessionId: a.sessionId, ip: IP });
    assert.equal(again.sessionId, a.sessionId);
    assert.equal(again.proc.vars.n, 1, 'with the state last saved');
    again.release();
    // The request that ran through it all kept its process, and its release lands.
    assert.notEqual(await r.redis.hget(`${r.prefix}s:${running.sessionId}`, `b:${running.proc.processId}`), '0');
    running.proc.vars.n = 7;
    running.release();
    const next = await x.engine.acquire({ sessionId: running.sessionId, ip: IP });
    assert.equal(next.proc.vars.n, 7);
    next.release();
    assert.deepEqual(x.hooked, []);
  } finally {
    running.release();
  }
}));

test("a claim whose reply is lost: closeSession fails (503), and the node's next sweeps run that close: its hook once, the session gone", { timeout: 20_000 }, (t) => withNode(t, async (r, x, clock) => {
  const a = await idleSession(r, x);
  loseNextReply(x.client, 'lwsClaim');
  await assert.rejects(x.engine.closeSession(a.sessionId), { code: 'ERR_SESSION_STORE_UNAVAILABLE' });
  assert.equal(await r.redis.hget(`${r.prefix}s:${a.sessionId}`, 'st'), 'c', 'the lost claim landed');
  clock.advance(1_000);
  assert.ok(await eventually(async () => (await r.redis.exists(`${r.prefix}s:${a.sessionId}`)) === 0, 5_000), 'the close was run');
  assert.deepEqual(x.hooked, [a.proc.processId]);
  assert.ok(await eventually(() => x.engine.stats().closed.closed === 1), 'counted once, where it ran');
}));

test('the repair never frees a process whose enter went to Redis just before it (its reply read after the repair began), even when that request began long ago on the clock', { timeout: 20_000 }, (t) => withNode(t, async (r, x, clock) => {
  const a = await idleSession(r, x, { n: 1 });
  const b = await idleSession(r, x);
  loseNextReply(x.client, 'lwsEnterManyBuffer');
  await assert.rejects(x.engine.acquire({ sessionId: b.sessionId, ip: IP }), { code: 'ERR_SESSION_STORE_UNAVAILABLE' }); // a repair is due
  let findSent!: () => void;
  const repairing = new Promise<void>((resolve) => { findSent = resolve; });
  wrapScript(x.client, 'lwsRepairFind', (find: Script) => async (...args) => { findSent(); return find(...args); });
  const freed: unknown[][] = [];
  wrapScript(x.client, 'lwsRepairFree', (free: Script) => async (...args) => { freed.push(args); return free(...args); });
  // A's enter leaves, then session time jumps (a long stall) and the sweep's repair starts before its reply is read.
  let held = true;
  wrapScript(x.client, 'lwsEnterManyBuffer', (enter: Script) => async (...args) => {
    const reply = enter(...args);
    if (held) {
      held = false;
      clock.advance(15_000);
      await repairing;
    }
    return reply;
  });
  const lease = await x.engine.acquire({ sessionId: a.sessionId, ip: IP });
  assert.ok(await eventually(() => freed.length > 0, 5_000), 'the repair ran (it frees B\'s orphan)');
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.notEqual(await r.redis.hget(`${r.prefix}s:${a.sessionId}`, `b:${lease.proc.processId}`), '0', 'A\'s process is still its request\'s');
  assert.ok(!freed.flat().some((arg) => String(arg).includes(lease.proc.processId) && String(arg).startsWith(a.sessionId)), 'A\'s process was not among those freed');
  lease.proc.vars.n = 2;
  lease.release();
  const next = await x.engine.acquire({ sessionId: a.sessionId, ip: IP });
  assert.equal(next.proc.vars.n, 2, 'its release landed');
  next.release();
  assert.deepEqual(x.errors.map((e) => e.code).filter((c) => c !== 'ERR_SESSION_STORE_UNAVAILABLE'), []);
}));

test('a spawn whose reply is lost: the repair removes the task process it left (never run: no hook for it), and the session goes idle and times out as any other', { timeout: 20_000 }, (t) => withNode(t, async (r, x, clock) => {
  const a = await lostSpawn(x);
  clock.advance(1_000);
  assert.ok(await eventually(async () => (await r.redis.hget(`${r.prefix}s:${a.sessionId}`, 'pl')) === a.proc.processId, 5_000), 'the task process left the session');
  assert.ok(await idleInRedis(r, a.sessionId));
  clock.advance(480 * 60_000);
  assert.ok(await eventually(() => x.hooked.length === 1, 5_000), 'timed out, one hook: the request process only');
  assert.deepEqual(x.hooked, [a.proc.processId]);
}));

test("a sweep whose reply is lost (its timeouts claimed, unread): the repair runs those closes, each hook once", { timeout: 20_000 }, (t) => withNode(t, async (r, x, clock) => {
  const a = await idleSession(r, x);
  loseNextReply(x.client, 'lwsSweep');
  clock.advance(480 * 60_000); // A is due: the next sweep claims it, and its reply is lost
  assert.ok(await eventually(async () => (await r.redis.hget(`${r.prefix}s:${a.sessionId}`, 'st')) === 'c', 5_000), 'claimed by the lost sweep');
  // A sweep a second (the failed one re-arms its timer once its error is read).
  assert.ok(await eventually(() => { clock.advance(1_000); return x.hooked.length === 1; }, 5_000), 'the repair ran the close');
  assert.deepEqual(x.hooked, [a.proc.processId]);
  assert.ok(await eventually(async () => (await r.redis.exists(`${r.prefix}s:${a.sessionId}`)) === 0, 5_000));
  assert.ok(await eventually(() => x.engine.stats().closed.timeout === 1), 'counted once, where it ran');
}));

test('a session regenerated between the repair\'s two steps: the process a lost enter took is freed under the new id', { timeout: 20_000 }, (t) => withNode(t, async (r, x, clock) => {
  const a = await idleSession(r, x);
  const pid = a.proc.processId;
  loseNextReply(x.client, 'lwsEnterManyBuffer');
  await assert.rejects(x.engine.acquire({ sessionId: a.sessionId, ip: IP }), { code: 'ERR_SESSION_STORE_UNAVAILABLE' });
  let newId: string | null = null;
  wrapScript(x.client, 'lwsRepairFree', (free: Script) => async (...args) => {
    newId ??= await x.engine.regenerate(a.sessionId);
    return free(...args);
  });
  assert.ok(await eventually(() => { clock.advance(1_000); return newId !== null; }, 5_000));
  assert.ok(await eventually(async () => (await r.redis.hget(`${r.prefix}s:${newId}`, `b:${pid}`)) === '0', 5_000), 'freed under the new id');
  const next = await x.engine.acquire({ sessionId: newId!, ip: IP });
  assert.equal(next.sessionId, newId);
  next.release();
}));

test('a lost spawn in a session closed before the repair: the task that never ran gets no hook', { timeout: 20_000 }, (t) => withNode(t, async (r, x, clock) => {
  const a = await lostSpawn(x);
  const closing = x.engine.closeSession(a.sessionId);
  assert.ok(await eventually(() => { clock.advance(1_000); return x.hooked.length > 0; }, 5_000));
  assert.equal(await closing, true);
  assert.deepEqual(x.hooked, [a.proc.processId], 'the request process only');
}));

test('a regenerate whose reply is lost after the rename ran: it still answers the new id, locks follow, and the old id is dead', { timeout: 20_000 }, (t) => withNode(t, async (r, x) => {
  const lease = await x.engine.acquire({ sessionId: undefined, ip: IP });
  const oldId = lease.sessionId;
  let newId: string | null;
  try {
    lease.proc.vars.n = 7;
    assert.equal(await lease.proc.locks.tryLock('Orders', 3), true);
    loseNextReply(x.client, 'lwsRename');
    newId = await lease.run(() => x.engine.regenerate(oldId));
    assert.ok(newId !== null && newId !== oldId, `regenerate answered ${String(newId)}`);
    assert.equal(lease.sessionId, newId, 'the response goes on under the new id');
    assert.equal((await lease.proc.locks.lockedBy('Orders', 3))?.sessionId, newId, 'the locks were renamed too');
  } finally {
    lease.release();
  }
  assert.equal(await r.redis.exists(`${r.prefix}s:${oldId}`), 0);
  const again = await x.engine.acquire({ sessionId: newId, ip: IP });
  assert.equal(again.sessionId, newId);
  assert.equal(again.proc.vars.n, 7, 'the context went along');
  again.release();
  const fixed = await x.engine.acquire({ sessionId: oldId, ip: IP });
  assert.notEqual(fixed.sessionId, oldId, 'the old id gets a new session');
  fixed.release();
}));

test('a regenerate whose call fails before the rename ran still says 503: nothing moved', { timeout: 20_000 }, (t) => withNode(t, async (r, x) => {
  const lease = await x.engine.acquire({ sessionId: undefined, ip: IP });
  try {
    wrapScript(x.client, 'lwsRename', () => async () => { throw new Error('Connection is closed.'); });
    await assert.rejects(lease.run(() => x.engine.regenerate(lease.sessionId)), { code: 'ERR_SESSION_STORE_UNAVAILABLE', sessionId: lease.sessionId });
    assert.equal(await r.redis.exists(`${r.prefix}s:${lease.sessionId}`), 1, 'the session is where it was');
    assert.equal(lease.sessionId, lease.proc.sessionId);
  } finally {
    lease.release();
  }
}));

test('a close whose finish reply is lost after the finish ran: the close still ends here, with its \'close\' event and its count, and closeSession resolves true', { timeout: 20_000 }, (t) => withNode(t, async (r, x) => {
  const a = await idleSession(r, x, { n: 1 });
  const events: string[] = [];
  x.engine.on('close', (event) => events.push(`${event.sessionId} ${event.reason}`));
  loseNextReply(x.client, 'lwsFinish');
  assert.equal(await x.engine.closeSession(a.sessionId), true);
  assert.deepEqual(x.hooked, [a.proc.processId], 'hooked once');
  assert.ok(await eventually(() => events.length === 1, 5_000), 'the close event came');
  assert.deepEqual(events, [`${a.sessionId} closed`]);
  assert.equal(x.engine.stats().closed.closed, 1);
  assert.equal(await r.redis.exists(`${r.prefix}s:${a.sessionId}`), 0);
  assert.deepEqual(x.errors.map((e) => e.code), []);
}));

test('a create whose reply is lost: the request gets 503, and the repair discards the session it made (its id reached no client): no hook, no close event, its place under the cap given back', { timeout: 20_000 }, (t) => withNode(t, async (r, x, clock) => {
  const closes: string[] = [];
  x.engine.on('close', (event) => closes.push(event.sessionId));
  loseNextReply(x.client, 'lwsCreate');
  await assert.rejects(x.engine.acquire({ sessionId: undefined, ip: IP }), { code: 'ERR_SESSION_STORE_UNAVAILABLE' });
  const made = await r.redis.zrange(`${r.prefix}open`, '0', '-1');
  assert.equal(made.length, 1, 'the create ran in Redis');
  await pastTheGrace(clock);
  assert.ok(await eventually(async () => (await r.redis.exists(`${r.prefix}s:${made[0]}`)) === 0, 5_000), 'discarded by the repair');
  assert.deepEqual(await r.redis.zrange(`${r.prefix}open`, '0', '-1'), []);
  assert.equal(Number(await r.redis.get(`${r.prefix}procs`) ?? '0'), 0, 'its place is given back');
  clock.advance(24 * 3_600_000);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.deepEqual([x.hooked, closes], [[], []], 'never hooked nor said closed: it was never made');
}));
