// Requests waiting in a session's queue when an init fails there (memory store). Found by the
// option-change soak's probes (optsoak).
// - A new session made for the requests of a closed session (they move to it: README's close pipeline,
//   step 1) whose init fails is discarded; the requests queued in it must not be left in a queue nobody
//   serves until queueTimeoutMs (uncounted in stats().queuedRequests meanwhile): they move on again.
// - An extra process (processesPerSession > 1) whose init fails leaves room for another: the request
//   waiting behind it takes that room at once, as after a processesPerSession raise, rather than waiting
//   for the session's other request to end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine } from '../src/index.js';
import { eventually, settle } from './helpers.js';

const IP = '127.0.0.1';

test('memory store: requests moved to a new session whose init fails move on to another session at once, not after queueTimeoutMs in the discarded one', { timeout: 20_000 }, async () => {
  let inits = 0;
  const engine = new SessionEngine({
    clock: new ManualClock(),
    init: () => (++inits === 2 ? new Promise<Record<string, unknown>>((_, reject) => setImmediate(() => reject(new Error('the database is away for a moment')))) : {}),
  });
  engine.on('error', () => {});
  const leases: Array<{ release(): void }> = [];
  const outcomes: string[] = [];
  try {
    const running = await engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(running);
    for (const name of ['W1', 'W2', 'W3']) {
      engine.acquire({ sessionId: running.sessionId, ip: IP }).then((lease) => {
        leases.push(lease);
        outcomes.push(`${name} ran`);
        lease.release();
      }, (error: { code?: string }) => { outcomes.push(`${name} ${String(error.code)}`); });
    }
    await settle(5);
    const closing = engine.closeSession(running.sessionId);
    running.release();
    assert.equal(await closing, true);
    // W1 makes the new session, whose init fails (500 for W1); W2 and W3 were queued in it.
    assert.ok(await eventually(() => outcomes.length === 3, 2_000), `the clock stands still: all three answered without a queue timeout (${outcomes.join(', ')})`);
    assert.deepEqual(outcomes, ['W1 ERR_SESSION_INIT_FAILED', 'W2 ran', 'W3 ran']);
    assert.equal(engine.stats().rejected.queueTimeout, 0);
  } finally {
    for (let i = 0; i < 10; i++) { for (const lease of leases) lease.release(); await settle(5); }
    await engine.stop();
  }
});

test('memory store: processesPerSession 2, the second process\'s init fails: the request queued behind it gets a process at once, while the first request still runs', { timeout: 20_000 }, async () => {
  let inits = 0;
  const engine = new SessionEngine({
    clock: new ManualClock(),
    processesPerSession: 2,
    init: () => (++inits === 2 ? new Promise<Record<string, unknown>>((_, reject) => setImmediate(() => reject(new Error('init fails once')))) : {}),
  });
  engine.on('error', () => {});
  const leases: Array<{ release(): void }> = [];
  const outcomes: string[] = [];
  try {
    const first = await engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(first);
    engine.acquire({ sessionId: first.sessionId, ip: IP }).then((lease) => { leases.push(lease); outcomes.push('second ran'); }, (error: { code?: string }) => { outcomes.push(`second ${String(error.code)}`); });
    await Promise.resolve(); // the second's init still runs: the third queues behind the two processes
    assert.equal(engine.sessions()[0]?.processCount, 2);
    engine.acquire({ sessionId: first.sessionId, ip: IP }).then((lease) => { leases.push(lease); outcomes.push('third ran'); }, (error: { code?: string }) => { outcomes.push(`third ${String(error.code)}`); });
    assert.ok(await eventually(() => outcomes.length === 2, 2_000), `both answered while the first request runs (${outcomes.join(', ')})`);
    assert.deepEqual(outcomes, ['second ERR_SESSION_INIT_FAILED', 'third ran']);
  } finally {
    for (let i = 0; i < 10; i++) { for (const lease of leases) lease.release(); await settle(5); }
    await engine.stop();
  }
});
