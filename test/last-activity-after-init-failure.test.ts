// After an extra process's asynchronous init fails (a request's second process, or a spawned task's),
// sessions() reports the session's last activity as the end of that failed work, on both stores: the
// memory store restarts the idle time there (idle-order-after-init-failure.test.ts), and a Redis node
// must say the same of the sessions it serves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../src/index.js';
import { deferred, eventually, settle } from './helpers.js';
import { storeChoices } from './store-choices.js';
import { engineOn, IP } from './init-failure-support.js';

const MINUTE = 60_000;
const GUARD = { timeout: 20_000 };

for (const [name, storeFor] of storeChoices()) {
  for (const work of ['a request\'s extra process', 'a spawned task'] as const) {
    test(`${name}: ${work} whose async init rejects after the session's request ended leaves lastActivityAt at its own end`, GUARD, async (t) => {
      const choice = await storeFor(t);
      if (choice === 'skip') return;
      const clock = new ManualClock();
      const t0 = clock.now();
      // The second init (the extra process's) waits, then fails; on Redis it starts after a round trip.
      const failing = deferred<never>();
      failing.promise.catch(() => {});
      let inits = 0;
      const { engine } = engineOn(choice, {
        clock, processesPerSession: 2, inactiveProcessTimeoutMs: 60 * MINUTE,
        init: () => (++inits === 2 ? failing.promise : {}),
      });
      try {
        const first = await engine.acquire({ sessionId: undefined, ip: IP });
        let second: Promise<string> | undefined;
        if (work === 'a spawned task') first.proc.spawn('task', async () => {});
        else second = engine.acquire({ sessionId: first.sessionId, ip: IP }).then((lease) => { lease.release(); return 'ran'; }, (error: { code?: string }) => error.code ?? 'no code');
        assert.ok(await eventually(() => inits === 2), "the extra process's init started");
        clock.advance(10 * MINUTE);
        first.release();
        await settle();
        clock.advance(10 * MINUTE);
        failing.reject(new Error('init failed'));
        if (second !== undefined) assert.equal(await second, 'ERR_SESSION_INIT_FAILED');
        await settle(20);
        const info = engine.sessions().find((s) => s.id === first.sessionId);
        assert.ok(info !== undefined, 'the session lives on');
        assert.equal((info.lastActivityAt.getTime() - t0) / MINUTE, 20, 'last activity: the failed work\'s end (minute 20), not the request\'s (minute 10)');
        if (choice.redis !== undefined && second !== undefined) {
          // What timeouts and eviction go by on Redis: the idle score, written by the release of the failed process.
          const { redis, prefix } = choice.redis;
          assert.ok(await eventually(async () => Number(await redis.zscore(`${prefix}idle`, first.sessionId)) === t0 + 20 * MINUTE), 'idle in Redis since minute 20');
        }
      } finally {
        await engine.stop();
      }
    });
  }
}
