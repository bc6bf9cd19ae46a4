// processesPerSession raised at run time while maxConcurrentProcesses leaves room for fewer new processes
// than sessions waiting (memory store): the room goes to the requests in the order they began to wait
// (SessionProcesses.admitAll: "first come first served"; README options table: a place freed goes to the
// request that waited first), not in the order their sessions were made.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine } from '../src/index.js';
import { settle } from './helpers.js';
import { track } from './engine-harness.js';

const IP = '127.0.0.1';

test('memory store: processesPerSession raised with room for one more process: the request that waited first gets it, not the one of the session made first', { timeout: 20_000 }, async () => {
  const engine = new SessionEngine({ clock: new ManualClock(), processesPerSession: 1, maxConcurrentProcesses: 3 });
  const leases: Array<{ release(): void }> = [];
  const keep = <T extends { release(): void }>(p: Promise<T>): Promise<T> => p.then((l) => { leases.push(l); return l; });
  try {
    const a1 = await keep(engine.acquire({ sessionId: undefined, ip: IP })); // session A, made first
    const b1 = await keep(engine.acquire({ sessionId: undefined, ip: IP })); // session B
    const b2 = track(keep(engine.acquire({ sessionId: b1.sessionId, ip: IP }))); // waits first
    await settle(5);
    const a2 = track(keep(engine.acquire({ sessionId: a1.sessionId, ip: IP }))); // waits second
    await settle(5);
    assert.equal(a2.settled || b2.settled, false, 'both wait: one process per session');
    engine.setOption('processesPerSession', 2); // room for one more process only (3 at most, 2 live)
    await settle(20);
    assert.deepEqual([b2.settled, a2.settled], [true, false], 'the one place goes to the request that waited first (session B)');
  } finally {
    for (let i = 0; i < 10; i++) { for (const lease of leases) lease.release(); await settle(5); }
    await engine.stop();
  }
});
