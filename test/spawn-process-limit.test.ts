// proc.spawn past maxConcurrentProcesses: ERR_SESSION_PROCESS_LIMIT (README's error table), counted in
// stats().rejected.processLimit, on either store. The memory store throws it from spawn(); the Redis
// store learns it a round trip later, and must still say it under that code and count it as a refusal,
// not as an application task that failed (taskErrors).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type SessionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { deferred, eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';

const IP = '127.0.0.1';

for (const store of ['memory', 'redis'] as const) {
  test(`${store} store: a spawn past maxConcurrentProcesses is refused as ERR_SESSION_PROCESS_LIMIT and counted in rejected.processLimit`, { timeout: 20_000 }, async (t: TestContext) => {
    let options = {};
    if (store === 'redis') {
      const r = await redisForTest(t);
      if (r === undefined) return;
      options = { store: createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: 20 }) };
    }
    const engine = new SessionEngine({ clock: new ManualClock(), maxConcurrentProcesses: 10, ...options });
    const errors: SessionError[] = [];
    engine.on('error', (error) => errors.push(error));
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    const hold = deferred();
    let ran = 0;
    const refusals: string[] = [];
    for (let i = 0; i < 10; i++) {
      try {
        lease.proc.spawn(`task${i}`, async () => { ran++; await hold.promise; });
      } catch (error) {
        refusals.push((error as SessionError).code);
      }
    }
    assert.ok(await eventually(() => ran + refusals.length + errors.length >= 10), 'every spawn ran or was refused');
    assert.equal(ran, 9, 'nine tasks fit beside the request');
    const said = [...refusals, ...errors.map((e) => e.code)];
    assert.deepEqual(said, ['ERR_SESSION_PROCESS_LIMIT'], 'the refusal carries its own code');
    assert.equal(engine.stats().rejected.processLimit, 1);
    assert.equal(engine.stats().taskErrors, 0, 'no application task failed');
    hold.resolve();
    lease.release();
    await engine.stop();
  });
}
