// maxConcurrentProcesses (memory store): "a request of a session waiting only for a place gets the next
// one freed ..., first come first served" (README options table). An extra process whose init fails
// gives its place back; the request queued behind it in its own session (README ERR_SESSION_INIT_FAILED:
// it "gets a process at once") needs that place too, but another session's request began waiting for a
// place before it: first come first served says the earlier one gets it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine } from '../src/index.js';
import { settle } from './helpers.js';
import { track } from './engine-harness.js';

const IP = '127.0.0.1';

test('memory store: the place a failed extra init gives back goes to the request that waited first for a place, not to the newer one behind the failed init', { timeout: 20_000 }, async () => {
  let inits = 0;
  let failInit!: () => void;
  const engine = new SessionEngine({
    clock: new ManualClock(), processesPerSession: 2, maxConcurrentProcesses: 3,
    init: () => (++inits === 3 ? new Promise<Record<string, unknown>>((_, reject) => { failInit = () => reject(new Error('init fails once')); }) : {}),
  });
  engine.on('error', () => {});
  const leases: Array<{ release(): void }> = [];
  const keep = <T extends { release(): void }>(p: Promise<T>): Promise<T> => p.then((l) => { leases.push(l); return l; });
  try {
    const s1 = await keep(engine.acquire({ sessionId: undefined, ip: IP })); // session S
    const t1 = await keep(engine.acquire({ sessionId: undefined, ip: IP })); // session T
    const s2 = track(keep(engine.acquire({ sessionId: s1.sessionId, ip: IP }))); // S's second process: its init hangs
    await settle(5);
    const t2 = track(keep(engine.acquire({ sessionId: t1.sessionId, ip: IP }))); // waits for a place (3 live)
    await settle(5);
    const s3 = track(keep(engine.acquire({ sessionId: s1.sessionId, ip: IP }))); // waits behind s2, later
    await settle(5);
    assert.equal(t2.settled || s3.settled, false, 'both wait');
    failInit();
    await settle(20);
    assert.equal(s2.settled, true, 's2 failed');
    assert.deepEqual([t2.settled, s3.settled], [true, false], 'the freed place goes to the request that waited first for one (session T)');
  } finally {
    failInit?.();
    for (let i = 0; i < 10; i++) { for (const lease of leases) lease.release(); await settle(5); }
    await engine.stop();
  }
});
