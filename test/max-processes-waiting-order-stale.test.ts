// maxConcurrentProcesses (memory store): a request waiting only for a place "gets the next one freed
// (raised, or given back by a close or an ended task), first come first served" (README), in the order
// the requests began to wait (test/max-processes-raised-order.test.ts). A session whose earlier waiter
// was served otherwise (a release of its own session handed it a process) must not keep that waiter's
// place in line for a request of it that comes later.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine } from '../src/index.js';
import { settle } from './helpers.js';
import { track } from './engine-harness.js';

const IP = '127.0.0.1';

for (const how of ['raised', 'given back'] as const) {
  test(`memory store: a place ${how} goes to the request that waited first, not to a later one of a session that waited before (its waiter served by a release)`, { timeout: 20_000 }, async () => {
    const engine = new SessionEngine({ clock: new ManualClock(), processesPerSession: 2, maxConcurrentProcesses: how === 'raised' ? 2 : 3 });
    const leases: Array<{ release(): void }> = [];
    const keep = <T extends { release(): void }>(p: Promise<T>): Promise<T> => p.then((l) => { leases.push(l); return l; });
    try {
      const y1 = await engine.acquire({ sessionId: undefined, ip: IP }); // session Y
      const x1 = await keep(engine.acquire({ sessionId: undefined, ip: IP })); // session X
      const z1 = how === 'given back' ? await keep(engine.acquire({ sessionId: undefined, ip: IP })) : undefined;
      const y2 = track(keep(engine.acquire({ sessionId: y1.sessionId, ip: IP }))); // waits for a place
      await settle(5);
      y1.release(); // Y's own process goes to y2: no place was needed after all
      await settle(5);
      assert.equal(y2.settled, true, 'y2 got the process y1 released');
      const x2 = track(keep(engine.acquire({ sessionId: x1.sessionId, ip: IP }))); // waits for a place first
      await settle(5);
      const y3 = track(keep(engine.acquire({ sessionId: y1.sessionId, ip: IP }))); // waits for a place second
      await settle(5);
      assert.equal(x2.settled || y3.settled, false, 'both wait: no place under maxConcurrentProcesses');
      if (how === 'raised') engine.setOption('maxConcurrentProcesses', 3);
      else {
        z1!.release();
        assert.equal(await engine.closeSession(z1!.sessionId), true);
      }
      await settle(20);
      assert.deepEqual([x2.settled, y3.settled], [true, false], 'the place goes to the request that waited first (session X)');
    } finally {
      for (let i = 0; i < 10; i++) { for (const lease of leases) lease.release(); await settle(5); }
      await engine.stop();
    }
  });
}
