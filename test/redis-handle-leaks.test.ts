// Handles a node keeps for sessions that have closed (src/redis/close-ends.ts): each must go once the
// session's work on the node is over, whatever handle that work ran under. Checked with WeakRefs and a
// forced GC: a handle left in the node's map of known sessions is never collected.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../src/index.js';
import { collected, eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { HeldMessages, IP, node, runAsCompanion, settledAsTimePasses, stopAll } from './redis-crossing.js';

test('a handle kept only for a companion\'s work (a task of a session regenerated on another node, the new id seen here first) goes once that work ends after the close: it is not kept for ever', { timeout: 30_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const held = new HeldMessages('N ', 'n ');
  const x = await node(r, clock, { held });
  const y = await node(r, clock);
  let endTask!: () => void;
  const taskEnds = new Promise<void>((resolve) => { endTask = resolve; });
  let closing: { settled: boolean } | undefined;
  try {
    // A session on x with a task running in it.
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    const oldId = a.sessionId;
    a.run(() => a.proc.spawn('task', async () => { await taskEnds; }));
    a.release();
    assert.ok(await eventually(async () => / t/.test(await r.redis.hget(`${r.prefix}s:${oldId}`, 'pl') ?? ''), 5_000), 'the task runs');
    // y regenerates it; a request with the new id reaches x before x hears of it; then x hears: the
    // task's handle goes on as the companion of the new id's handle.
    const { newId, primary } = await runAsCompanion(r, x, y, held, oldId);
    assert.ok(await eventually(() => x.engine.sessions().find((s) => s.id === newId)?.busy === true, 5_000), "the task counts as the new id's work on x");
    // y closes the session; its drain gives up on the task (closeTimeoutMs), hooks, finishes; x hears 'x'.
    const close = { settled: false };
    closing = close;
    const closed = y.engine.closeSession(newId).finally(() => { close.settled = true; });
    assert.ok(await settledAsTimePasses(clock, close), 'the close ends without the task');
    assert.equal(await closed, true);
    assert.equal(await r.redis.exists(`${r.prefix}s:${newId}`), 0);
    // The task ends after the close: its work is over, nothing of the session is left on x.
    endTask();
    assert.ok(await eventually(() => x.engine.stats().busySessions === 0 && x.engine.sessions().length === 0, 5_000));
    assert.ok(await collected(primary), 'the handle of the closed session is collected (not kept in the node\'s known sessions)');
  } finally {
    endTask();
    held.deliver();
    await stopAll(clock, [], closing, x, y);
  }
});

test('a logout from a companion\'s request (a session regenerated on another node while the request ran, the new id seen here first), the close run here: the new id\'s handle goes once that request ends', { timeout: 30_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const held = new HeldMessages('N ', 'n ');
  const x = await node(r, clock, { held, processesPerSession: 2 });
  const y = await node(r, clock, { processesPerSession: 2 });
  let a: Awaited<ReturnType<typeof x.engine.acquire>> | undefined;
  try {
    a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    const { newId, primary } = await runAsCompanion(r, x, y, held, a.sessionId);
    const running = a;
    assert.ok(await eventually(() => running.sessionId === newId, 5_000), 'x hears of the rename');
    // The logout: x claims and runs the close, the caller hooked live; the request ends after it.
    assert.equal(await running.run(() => x.engine.closeSession(running.sessionId)), true);
    assert.equal(await r.redis.exists(`${r.prefix}s:${newId}`), 0);
    running.release();
    a = undefined;
    assert.ok(await eventually(() => x.engine.stats().busySessions === 0 && x.engine.sessions().length === 0, 5_000));
    assert.equal(x.hooked.length, 2, 'both processes hooked');
    assert.ok(await collected(primary), 'the handle of the closed session is collected (not kept in the node\'s known sessions)');
  } finally {
    held.deliver();
    await stopAll(clock, [a], undefined, x, y);
  }
  assert.deepEqual([...x.errors, ...y.errors].map((e) => e.message), []);
});
