// One request at a time per process (invariant 7): the session's FIFO queue and its bound, and requests beside spawned tasks.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../src/index.js';
import { deferred, engineWithErrors, settle } from './helpers.js';
import { keepLoopAlive, leaseTracker } from './engine-harness.js';

const IP = '203.0.113.5';
const { open, shutdown } = leaseTracker(IP);
const MINUTE = 60_000;
/** Every test is bounded: a hang (a deadlock in the engine) fails that test instead of stalling the run. */
const GUARD = { timeout: 5_000 };

keepLoopAlive();

interface Vars {
  n: number;
}

describe('requests of one process never overlap (invariant 7): the queue', () => {
  test('queued requests of one session run one at a time, in arrival order, all in the same process', GUARD, async () => {
    const { engine } = engineWithErrors<Vars>();
    try {
      const first = await open(engine);
      const id = first.sessionId;
      let inFlight = 1;
      let maxInFlight = 1;
      const order: number[] = [];
      const runs = [0, 1, 2, 3, 4].map((i) => open(engine, id).then(async (lease) => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        order.push(i);
        assert.equal(lease.proc, first.proc);
        await lease.run(() => settle(1));
        inFlight--;
        lease.release();
      }));
      await settle();
      assert.equal(engine.stats().queuedRequests, 5);
      assert.deepEqual(order, []);
      inFlight--;
      first.release();
      await Promise.all(runs);
      assert.deepEqual(order, [0, 1, 2, 3, 4]);
      assert.equal(maxInFlight, 1);
      assert.equal(engine.stats().queuedRequests, 0);
    } finally {
      await shutdown(engine);
    }
  });

  test('the request after maxQueuedRequests waiters is refused with ERR_SESSION_QUEUE_FULL (503)', GUARD, async () => {
    const { engine } = engineWithErrors<Vars>({ maxQueuedRequests: 2 });
    try {
      const first = await open(engine);
      const id = first.sessionId;
      const waiting = [open(engine, id), open(engine, id)];
      await assert.rejects(open(engine, id), { name: 'SessionError', code: 'ERR_SESSION_QUEUE_FULL', httpStatus: 503, sessionId: id });
      assert.equal(engine.stats().queuedRequests, 2);
      assert.equal(engine.sessions()[0]?.queuedRequests, 2);
      assert.equal(engine.stats().rejected.queueFull, 1);

      first.release();
      const second = await waiting[0]!;
      // One place freed in the queue: a new waiter is accepted again.
      const fourth = open(engine, id);
      second.release();
      (await waiting[1]!).release();
      (await fourth).release();
      assert.equal(engine.stats().rejected.queueFull, 1);
    } finally {
      await shutdown(engine);
    }
  });

  test("a request refused because the queue is full does not extend the session's cookie", GUARD, async () => {
    const clock = new ManualClock();
    const t0 = clock.now();
    const { engine } = engineWithErrors<Vars>({ clock, maxQueuedRequests: 0, inactiveSessionTimeoutMs: MINUTE, inactiveProcessTimeoutMs: 60 * MINUTE });
    try {
      const first = await open(engine);
      clock.advance(30_000);
      await assert.rejects(open(engine, first.sessionId), { code: 'ERR_SESSION_QUEUE_FULL' });
      assert.deepEqual(engine.sessionExpiration(first.sessionId), new Date(t0 + MINUTE), 'only an accepted request restarts the cookie');
      first.release();
    } finally {
      await shutdown(engine, clock);
    }
  });

  test('a request never gets a spawned task\'s process: with a task running, requests take request processes only (a new one when the first is busy), and queue when those are busy', GUARD, async () => {
    const { engine } = engineWithErrors<Vars>({ processesPerSession: 2, init: () => ({ n: 0 }) });
    const taskDone = deferred();
    try {
      const first = await open(engine);
      const id = first.sessionId;
      const task = first.proc.spawn('job', async () => { await taskDone.promise; });
      first.release();
      // The task runs; its process sits in the session's list after the first request process.
      const again = await open(engine, id);
      assert.equal(again.proc, first.proc, 'the free request process, not the task');
      const second = await open(engine, id); // a second request process, made after the task's
      assert.notEqual(second.proc, task);
      assert.notEqual(second.proc, first.proc);
      assert.equal(second.proc.name, 'web');
      assert.equal(engine.sessionProcessCount(id), 3);
      let thirdRan = false;
      const third = open(engine, id).then((lease) => { thirdRan = true; return lease; });
      await settle();
      assert.equal(thirdRan, false, 'both request processes busy: the third waits, it does not take the task');
      second.release();
      const thirdLease = await third;
      assert.equal(thirdLease.proc, second.proc);
      thirdLease.release();
      again.release();
      taskDone.resolve();
      await settle();
      assert.equal(engine.sessionProcessCount(id), 2, 'the task ended on its own; the two request processes stay');
      const later = [await open(engine, id), await open(engine, id)];
      assert.deepEqual(new Set(later.map((l) => l.proc)), new Set([first.proc, second.proc]));
      for (const lease of later) lease.release();
    } finally {
      await shutdown(engine);
    }
  });
});
