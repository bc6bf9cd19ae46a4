// maxQueuedRequests lowered at run time "refuses newcomers, never a request already waiting" (README).
// Requests waiting for a session that closes are moved to a new session and go on waiting there (for
// what is left of their queueTimeoutMs): they were waiting already, so the lowered bound must not refuse
// them at the move either. Found on the memory store by an option-change soak; the Redis store holds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine } from '../src/index.js';
import { eventually, settle } from './helpers.js';
import { storeChoices } from './store-choices.js';

const IP = '127.0.0.1';

for (const [storeName, choose] of storeChoices({ pollIntervalMs: 20 })) {
  test(`${storeName}: maxQueuedRequests lowered while four requests wait, then their session closes: all four run in the new session, none gets 503 ERR_SESSION_QUEUE_FULL`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const engine = new SessionEngine({ ...choice.options, clock: new ManualClock(), maxQueuedRequests: 4 });
    const leases: Array<{ release(): void }> = [];
    const outcomes: string[] = [];
    try {
      const running = await engine.acquire({ sessionId: undefined, ip: IP });
      leases.push(running);
      for (let i = 1; i <= 4; i++) {
        engine.acquire({ sessionId: running.sessionId, ip: IP }).then((lease) => {
          leases.push(lease);
          outcomes.push(`W${i} ${lease.sessionId === running.sessionId ? 'old session' : 'new session'}`);
          lease.release();
        }, (error: { code?: string }) => { outcomes.push(`W${i} ${String(error.code)}`); });
      }
      assert.ok(await eventually(() => engine.stats().queuedRequests === 4, 5_000), 'four wait');
      engine.setOption('maxQueuedRequests', 1);
      await settle(50);
      const closing = engine.closeSession(running.sessionId);
      running.release();
      assert.equal(await closing, true);
      assert.ok(await eventually(() => outcomes.length === 4, 5_000), `all four answered: ${outcomes.join(', ')}`);
      assert.deepEqual(outcomes.sort(), ['W1 new session', 'W2 new session', 'W3 new session', 'W4 new session']);
      assert.equal(engine.stats().rejected.queueFull, 0);
    } finally {
      for (let i = 0; i < 10; i++) { for (const lease of leases) lease.release(); await settle(5); }
      await engine.stop();
    }
  });
}
