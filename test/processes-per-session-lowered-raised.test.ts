// processesPerSession lowered and then raised back at run time (memory store): a session that kept a
// process over the lowered value has a free process again once it is raised. README's options table:
// "raised at run time, the room goes to the requests already waiting (at once in memory …); a newcomer
// never overtakes them". Found by the option-change soak (optsoak).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine } from '../src/index.js';
import { eventually, settle } from './helpers.js';
import { track } from './engine-harness.js';

const IP = '127.0.0.1';

test('memory store: processesPerSession lowered then raised again, the request already waiting takes the free process at once, and a newcomer does not overtake it', { timeout: 20_000 }, async () => {
  const engine = new SessionEngine({ clock: new ManualClock(), processesPerSession: 2 });
  const leases: Array<{ release(): void }> = [];
  try {
    const first = await engine.acquire({ sessionId: undefined, ip: IP });
    const id = first.sessionId;
    const second = await engine.acquire({ sessionId: id, ip: IP });
    leases.push(second);
    engine.setOption('processesPerSession', 1);
    const waiting = track(engine.acquire({ sessionId: id, ip: IP }).then((l) => { leases.push(l); return l; }));
    first.release(); // two requests still ran: its process is freed, not handed over
    await settle(20);
    assert.equal(waiting.settled, false, 'one request (second) still runs: the waiting one waits');
    engine.setOption('processesPerSession', 2); // room for a second request at a time: the freed process
    const newcomer = track(engine.acquire({ sessionId: id, ip: IP }).then((l) => { leases.push(l); return l; }));
    await settle(20);
    assert.equal(waiting.settled, true, 'the request already waiting runs at once on the free process (room raised)');
    assert.equal(newcomer.settled, false, 'the newcomer queues behind it');
    second.release();
    assert.ok(await eventually(() => newcomer.settled, 5_000));
  } finally {
    // Every request ends (releasing twice is a no-op), so stop() has nothing to wait for.
    for (let i = 0; i < 10; i++) { for (const lease of leases) lease.release(); await settle(5); }
    await engine.stop();
  }
});
