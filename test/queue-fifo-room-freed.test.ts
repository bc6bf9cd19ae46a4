// processesPerSession 2, maxConcurrentProcesses reached: a request of a busy session waits for a place
// (scheduler.enter, "first come, first served: a newcomer never overtakes the requests already waiting,
// even when there is room for one more process now"). Once a place is freed, a request of that session
// arriving in the same turn (before the waiters are admitted on the next microtask) must queue behind
// the one already waiting, not take the new place first.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RequestLease } from '../src/index.js';
import { engineWithErrors, settle } from './helpers.js';
import { keepLoopAlive, leaseTracker } from './engine-harness.js';

const IP = '203.0.113.15';
const { open, shutdown } = leaseTracker(IP);

keepLoopAlive();

test('a place freed while a request waits for one goes to that request, not to a newcomer of the same session', { timeout: 5_000 }, async () => {
  const { engine } = engineWithErrors({ processesPerSession: 2, maxConcurrentProcesses: 10, maxSessions: 10 });
  try {
    const others: string[] = [];
    for (let i = 0; i < 9; i++) {
      const lease = await open(engine);
      lease.release();
      others.push(lease.sessionId);
    }
    const first = await open(engine); // the 10th process: the limit is reached
    const id = first.sessionId;
    assert.equal(engine.stats().processes, 10);

    const order: string[] = [];
    const leases: RequestLease[] = [];
    const track = (name: string) => (lease: RequestLease): void => { order.push(name); leases.push(lease); };
    const waiting = engine.acquire({ sessionId: id, ip: IP }).then(track('waiting'), (error: { code?: string }) => { order.push(`waiting refused ${error.code}`); });
    await settle();
    assert.equal(engine.stats().queuedRequests, 1, 'no place for a second process: it waits');

    void engine.closeSession(others[0]!); // frees a place (its process stops counting at once)
    const newcomer = engine.acquire({ sessionId: id, ip: IP }).then(track('newcomer'), (error: { code?: string }) => { order.push(`newcomer refused ${error.code}`); });
    await settle();
    assert.deepEqual(order, ['waiting'], 'the request that waited gets the freed place; the newcomer waits');

    first.release(); // the first process is free: the newcomer's turn
    await Promise.all([waiting, newcomer]);
    assert.deepEqual(order, ['waiting', 'newcomer']);
    for (const lease of leases) lease.release();
  } finally {
    await shutdown(engine);
  }
});
