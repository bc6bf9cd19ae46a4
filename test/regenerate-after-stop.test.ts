// After a Redis node's stop() the engine answers as a stopped memory engine does (README, onStop):
// regenerate() of any id answers null at once, as closeSession() answers false; it must not wait on a
// closed connection for a node lease and then fail with a 503 (nor leave a caller's await pending).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { redisForTest } from './redis-support.js';

const IP = '127.0.0.1';

for (const store of ['memory', 'redis'] as const) {
  test(`${store} store: regenerate() after stop() answers null at once, like closeSession() answers false`, { timeout: 20_000 }, async (t: TestContext) => {
    let options = {};
    if (store === 'redis') {
      const r = await redisForTest(t);
      if (r === undefined) return;
      options = { store: createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: 20 }) };
    }
    const engine = new SessionEngine({ clock: new ManualClock(), ...options });
    const errors: string[] = [];
    engine.on('error', (error) => errors.push(`${error.code}: ${error.message}`));
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    lease.release();
    await engine.stop();
    assert.equal(await engine.closeSession(lease.sessionId), false);
    const answer = await Promise.race([
      engine.regenerate(lease.sessionId).then((id) => ({ id }), (error: unknown) => ({ error: (error as { code?: string }).code })),
      new Promise((resolve) => setTimeout(() => resolve('still pending after 2 s'), 2_000)),
    ]);
    assert.deepEqual(answer, { id: null });
    assert.deepEqual(errors, []);
  });
}
