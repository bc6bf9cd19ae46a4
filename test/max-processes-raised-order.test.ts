// maxConcurrentProcesses raised at run time (memory store): README's options table says a request of a
// session waiting only for a place "gets the next one freed (raised, or given back by a close or an
// ended task), first come first served". The place a raise makes goes to the request that began to wait
// first, whatever the order its session was created in. Found by the option-change soak (optsoak).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine } from '../src/index.js';
import { settle } from './helpers.js';
import { track } from './engine-harness.js';

const IP = '127.0.0.1';

test('memory store: maxConcurrentProcesses raised by one, the request that waited first for a place gets it, not the one of the session created first', { timeout: 20_000 }, async () => {
  const engine = new SessionEngine({ clock: new ManualClock(), processesPerSession: 2, maxConcurrentProcesses: 2 });
  const leases: Array<{ release(): void }> = [];
  const keep = <T extends { release(): void }>(p: Promise<T>): Promise<T> => p.then((l) => { leases.push(l); return l; });
  try {
    const x1 = await keep(engine.acquire({ sessionId: undefined, ip: IP })); // session X, created first
    const y1 = await keep(engine.acquire({ sessionId: undefined, ip: IP })); // session Y
    const y2 = track(keep(engine.acquire({ sessionId: y1.sessionId, ip: IP }))); // waits for a place first
    await settle(5);
    const x2 = track(keep(engine.acquire({ sessionId: x1.sessionId, ip: IP }))); // waits for a place second
    await settle(5);
    assert.equal(y2.settled || x2.settled, false, 'both wait: no place under maxConcurrentProcesses');
    engine.setOption('maxConcurrentProcesses', 3);
    await settle(20);
    assert.deepEqual([y2.settled, x2.settled], [true, false], 'the place goes to the request that waited first (session Y)');
  } finally {
    for (let i = 0; i < 10; i++) { for (const lease of leases) lease.release(); await settle(5); }
    await engine.stop();
  }
});

test('memory store: a place given back goes to the request that waited first for one (the rule the raise must follow too)', { timeout: 20_000 }, async () => {
  const engine = new SessionEngine({ clock: new ManualClock(), processesPerSession: 2, maxConcurrentProcesses: 3 });
  const leases: Array<{ release(): void }> = [];
  const keep = <T extends { release(): void }>(p: Promise<T>): Promise<T> => p.then((l) => { leases.push(l); return l; });
  try {
    const x1 = await keep(engine.acquire({ sessionId: undefined, ip: IP }));
    const y1 = await keep(engine.acquire({ sessionId: undefined, ip: IP }));
    const z1 = await keep(engine.acquire({ sessionId: undefined, ip: IP }));
    const y2 = track(keep(engine.acquire({ sessionId: y1.sessionId, ip: IP })));
    await settle(5);
    const x2 = track(keep(engine.acquire({ sessionId: x1.sessionId, ip: IP })));
    await settle(5);
    z1.release();
    assert.equal(await engine.closeSession(z1.sessionId), true); // gives its place back
    await settle(20);
    assert.deepEqual([y2.settled, x2.settled], [true, false]);
  } finally {
    for (let i = 0; i < 10; i++) { for (const lease of leases) lease.release(); await settle(5); }
    await engine.stop();
  }
});
