// RequestLease.release() is idempotent (its doc comment, README "API"): a second release of a lease whose
// process went on to a queued request must not free that process while the next request still holds
// it, or a third request of the session would run in the same process at the same time (invariant 7).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { engineWithErrors, settle } from './helpers.js';
import { keepLoopAlive, leaseTracker } from './engine-harness.js';

const IP = '203.0.113.7';
const { open, shutdown } = leaseTracker(IP);
const GUARD = { timeout: 5_000 };

keepLoopAlive();

test('a lease released twice does not free the process the next queued request now holds', GUARD, async () => {
  const { engine } = engineWithErrors();
  try {
    const first = await open(engine);
    const id = first.sessionId;
    let secondRuns = false;
    let thirdRan = false;
    const second = open(engine, id).then((lease) => { secondRuns = true; return lease; });
    await settle();
    assert.equal(engine.stats().queuedRequests, 1);

    first.release();
    const held = await second;
    assert.equal(secondRuns, true);
    assert.equal(held.proc, first.proc);

    // The application (or an adapter with two paths to the end of a response) releases again.
    first.release();
    await settle();
    assert.equal(engine.sessions()[0]?.busy, true, 'the session stays busy: its process runs the second request');

    const third = open(engine, id).then((lease) => { thirdRan = true; return lease; });
    await settle();
    assert.equal(thirdRan, false, 'the third request must wait for the second: one process, one request at a time');
    assert.equal(engine.stats().queuedRequests, 1);

    held.release();
    const last = await third;
    assert.equal(thirdRan, true);
    last.release();
  } finally {
    await shutdown(engine);
  }
});
