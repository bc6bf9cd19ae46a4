// Timeouts longer than setTimeout's 2^31-1 ms (24.8 days) on the default system clock: options accept
// up to 366 days (MAX_DURATION_MS), and realTimer clamps its delay to 2^31-1 ms saying "a long timeout is
// re-armed by its owner when it fires early"; the queue, drain and hook bounds are not re-armed, so they
// end after 24.8 days whatever was set. Node's mock timers stand in for 25 days of real time.
import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { SessionEngine } from '../src/index.js';

const IP = '127.0.0.1';
const DAY = 24 * 60 * 60 * 1000;

test('system clock: a request waits its whole queueTimeoutMs of 30 days, not the 24.8 days setTimeout can hold', { timeout: 20_000 }, async () => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: Date.UTC(2026, 0, 1) });
  const engine = new SessionEngine({ queueTimeoutMs: 30 * DAY });
  let first: { sessionId: string; release(): void } | undefined;
  try {
    first = await engine.acquire({ sessionId: undefined, ip: IP });
    let outcome = 'waiting';
    engine.acquire({ sessionId: first.sessionId, ip: IP }).then((lease) => { outcome = 'ran'; lease.release(); }, (error: { code?: string }) => { outcome = String(error.code); });
    mock.timers.tick(25 * DAY);
    for (let i = 0; i < 5; i++) await Promise.resolve();
    assert.equal(outcome, 'waiting', 'after 25 of its 30 days the request still waits');
    first.release();
    for (let i = 0; i < 5; i++) await Promise.resolve();
    assert.equal(outcome, 'ran');
  } finally {
    mock.timers.reset();
    first?.release();
    await engine.stop();
  }
});
