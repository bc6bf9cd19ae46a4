// close.ts `within`: an async onClose that settles in time is not reported as hung when its end and its
// deadline fall in one jump of the clock (a test clock moved hours at once, a system clock after a
// suspend): work already settled wins over a deadline fired in the same turn. The existing "clock jumps"
// test uses a synchronous hook, which never reaches the deadline race.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type CloseEvent } from '../src/index.js';
import { engineWithErrors, settle } from './helpers.js';
import { keepLoopAlive, leaseTracker } from './engine-harness.js';

const IP = '203.0.113.13';
const { open, shutdown } = leaseTracker(IP);
const MINUTE = 60_000;

keepLoopAlive();

test('an async onClose that ends 100 ms after it starts is not reported as timed out when the clock jumps 8 hours at once', { timeout: 5_000 }, async () => {
  const clock = new ManualClock();
  let hooksEnded = 0;
  const { engine, errors } = engineWithErrors({
    clock, inactiveProcessTimeoutMs: MINUTE, closeTimeoutMs: 1_000,
    onClose: () => new Promise<void>((resolve) => { clock.setTimer(() => { hooksEnded++; resolve(); }, 100); }),
  });
  const closes: CloseEvent[] = [];
  engine.on('close', (event) => closes.push(event));
  try {
    const lease = await open(engine);
    lease.release();
    const closing = engine.closeSession(lease.sessionId);
    await settle(); // the hook has started: its end is due at +100 ms, its deadline at +1 s
    clock.advance(8 * 60 * MINUTE);
    assert.equal(await closing, true);
    await settle();
    assert.equal(hooksEnded, 1);
    assert.deepEqual(closes.map((e) => [e.reason, e.hookFailures]), [['closed', 0]]);
    assert.deepEqual(errors.map((e) => e.code), []);
    assert.equal(engine.stats().hookTimeouts, 0);
  } finally {
    await shutdown(engine, clock);
  }
});
