// A node taken for dead (stalled past two leases) wakes with a run whose process another node's request
// has now. The lock calls that run makes are fenced in Redis (src/redis/run-locks.ts); its teardown must
// not free the process's locks either: RELEASE_ALL frees every lock of the process id, the other node's
// request's included (src/redis/processes.ts tearDown).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SessionError } from '../src/index.js';
import { eventually } from './helpers.js';
import { lookDead, IP } from './redis-crossing.js';
import { LEASE_MS, sweepUntil, withTwoNodes } from './redis-stall.js';

interface Started { readonly sessionId: string; readonly processId: string }

let letInitOn = (): void => {};
let inInit = (_started: Started): void => {};

test('redis: a woken node\'s init that fails once its process went to another node\'s request (the fence refused its lock call) frees none of that request\'s locks at its teardown', { timeout: 20_000 }, (t) => {
  const initWaits = new Promise<void>((resolve) => { letInitOn = resolve; });
  const initStarted = new Promise<Started>((resolve) => { inInit = resolve; });
  return withTwoNodes(t, async ({ r, x, y, leases }) => {
    const creating = x.engine.acquire({ sessionId: undefined, ip: IP });
    creating.catch(() => {});
    const { sessionId, processId } = await initStarted;
    const xNode = (await r.redis.hget(`${r.prefix}s:${sessionId}`, `o:${processId}`))!;
    x.stall();
    await lookDead(r, xNode, LEASE_MS);
    assert.ok(await sweepUntil(y, async () => (await r.redis.hget(`${r.prefix}s:${sessionId}`, `b:${processId}`)) === '0'), "y's sweep freed x's process");
    const onY = await y.engine.acquire({ sessionId, ip: IP });
    leases.push(onY);
    assert.equal(onY.proc.processId, processId, 'the same process, now on y (its init ran there)');

    letInitOn();
    await assert.rejects(creating, (error: SessionError) => error instanceof SessionError, "x's request fails (its init's lock call refused)");
    // Its teardown has run by now (initRequestProcess awaits it before rejecting).
    assert.equal((await onY.proc.locks.lockedBy('I', 1))?.processId, processId, "y's lock I:1 stands (x's init took it too, before the stall)");
    assert.equal((await onY.proc.locks.lockedBy('I', 2))?.processId, processId, "y's lock I:2 stands (x's refused tryLock took nothing)");
  }, {
    // x's init locks I:1, waits (x stalls meanwhile), then locks I:2: refused, so it fails.
    x: { init: async (proc) => {
      assert.equal(await proc.locks.tryLock('I', 1), true);
      inInit({ sessionId: proc.sessionId, processId: proc.processId });
      await initWaits;
      await proc.locks.tryLock('I', 2);
      return {};
    } },
    y: { init: async (proc) => {
      assert.equal(await proc.locks.tryLock('I', 1), true);
      assert.equal(await proc.locks.tryLock('I', 2), true);
      return {};
    } },
  });
});

test('redis: a task that ends on a woken node before any beat tells it it was taken for dead frees none of its process\'s locks at its teardown (its release, fenced, says so first)', { timeout: 20_000 }, (t) => withTwoNodes(t, async ({ r, x, y, leases }) => {
  const spawner = await x.engine.acquire({ sessionId: undefined, ip: IP });
  leases.push(spawner);
  let locked!: (processId: string) => void;
  const taskLocked = new Promise<string>((resolve) => { locked = resolve; });
  let letTaskEnd!: () => void;
  const taskMayEnd = new Promise<void>((resolve) => { letTaskEnd = resolve; });
  let taskProc: { readonly closed: boolean } | undefined;
  spawner.proc.spawn('bg', async (p) => {
    taskProc = p;
    assert.equal(await p.locks.tryLock('K', 1), true);
    locked(p.processId);
    await taskMayEnd;
  });
  const taskPid = await taskLocked;
  spawner.release();
  const xNode = (await r.redis.hget(`${r.prefix}s:${spawner.sessionId}`, `o:${taskPid}`))!;
  x.stall(); // x beats no more: nothing tells it of the sweep
  await lookDead(r, xNode, LEASE_MS);
  assert.ok(await sweepUntil(y, async () => (await r.redis.hget(`${r.prefix}s:${spawner.sessionId}`, `b:${taskPid}`)) === '0'), "y's sweep freed the task's process");

  letTaskEnd();
  assert.ok(await eventually(() => taskProc?.closed === true, 5_000), 'the task ended and was torn down on x');
  assert.ok(await eventually(() => x.errors.some((e) => e.code === 'ERR_SESSION_WRITE_FENCED'), 5_000), 'its release was fenced');
  assert.equal((await y.engine.lockManager.lockedBy({ table: 'K', key: 1 }))?.processId, taskPid, 'the process keeps its lock: x freed nothing in its name');
}));
