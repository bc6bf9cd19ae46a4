// 'timeout' closes a session idle LONGER than inactiveProcessTimeoutMs (DESIGN §1: fired by a timer, at
// most 1 s late). The Redis sweep decides by the idle score; a sweep that ran at timeout − 500 ms must
// not close the session (no test pinned the early side: only "closed once past the deadline").
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type CloseEvent, type SessionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';

const IP = '127.0.0.1';
const SWEEP_INTERVAL_MS = 1_000;
const TIMEOUT_MS = 10 * 60_000;

test('Redis store: a session idle for the timeout minus half a second is not timed out; it is once the timeout has passed', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const closes: CloseEvent[] = [];
  const errors: SessionError[] = [];
  const engine = new SessionEngine({
    clock, inactiveProcessTimeoutMs: TIMEOUT_MS, inactiveSessionTimeoutMs: TIMEOUT_MS,
    store: createRedisStore({ url: r.url, prefix: r.prefix, sweepIntervalMs: SWEEP_INTERVAL_MS, pollIntervalMs: 20 }),
  });
  engine.on('close', (event) => closes.push(event));
  engine.on('error', (error) => errors.push(error));
  try {
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    lease.release();
    assert.ok(await eventually(async () => (await r.redis.zcard(`${r.prefix}idle`)) === 1), 'idle in Redis');
    const idleSince = Number(await r.redis.zscore(`${r.prefix}idle`, lease.sessionId));

    // A sweep at idleSince + TIMEOUT − 500 ms: not due.
    clock.advance(idleSince + TIMEOUT_MS - 500 - clock.now());
    // Real time for the sweep that timer started to reach Redis and come back (a few round trips).
    await new Promise((resolve) => setTimeout(resolve, 400));
    assert.deepEqual(closes.map((c) => c.reason), [], 'not closed before its timeout');
    assert.notEqual(await r.redis.zscore(`${r.prefix}open`, lease.sessionId), null, 'still open in Redis');

    // Past the deadline (and within a sweep interval of it): closed with 'timeout'.
    clock.advance(SWEEP_INTERVAL_MS);
    assert.ok(await eventually(() => closes.length === 1, 3_000), 'timed out once past its deadline');
    assert.deepEqual(closes.map((c) => [c.sessionId, c.reason]), [[lease.sessionId, 'timeout']]);
  } finally {
    await engine.stop();
  }
  assert.deepEqual(errors.map((e) => e.message), []);
});
