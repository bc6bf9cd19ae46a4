// Options set at run time go with the last node's stop(), and a cluster started afresh on the prefix runs
// with its constructors' options (README, "Running on more than one machine"). That holds for an option
// set while that stop runs (WEB SET OPTION from a shutdown hook, or from code still running), and an
// option set during the stop of a node that is not the last still reaches, and stays with, the others.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { use4D, Web_inactive_process_timeout } from '../src/compat-4d.js';
import { eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';

async function visit(engine: SessionEngine): Promise<void> {
  (await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' })).release();
}

for (const from of ['the stop\'s own shutdown hook', 'outside, while the shutdown hook runs'] as const) {
  test(`redis: an option set during the last node's stop (from ${from}) goes with it: a cluster started afresh runs with its constructors' options`, { timeout: 20_000 }, async (t) => {
    const r = await redisForTest(t);
    if (r === undefined) return;
    const clock = new ManualClock();
    let hookRunning!: () => void;
    const inHook = new Promise<void>((resolve) => { hookRunning = resolve; });
    let letHookEnd!: () => void;
    const hookMayEnd = new Promise<void>((resolve) => { letHookEnd = resolve; });
    const a: SessionEngine = new SessionEngine({
      clock,
      store: createRedisStore({ redis: await r.client(), prefix: r.prefix }),
      onClose: async () => {
        if (from === 'the stop\'s own shutdown hook') use4D(a).WEB_SET_OPTION(Web_inactive_process_timeout, 9);
        hookRunning();
        await hookMayEnd;
      },
    });
    let fresh: SessionEngine | undefined;
    try {
      await visit(a);
      use4D(a).WEB_SET_OPTION(Web_inactive_process_timeout, 30);
      assert.ok(await eventually(async () => (await r.redis.hget(`${r.prefix}opts`, 'inactiveProcessTimeoutMs')) === '1800000', 3_000), 'the cluster holds the option');
      const stopping = a.stop();
      await inHook;
      if (from !== 'the stop\'s own shutdown hook') use4D(a).WEB_SET_OPTION(Web_inactive_process_timeout, 9);
      letHookEnd();
      await stopping;
      assert.deepEqual(await r.redis.hgetall(`${r.prefix}opts`), {}, 'no option left in Redis after the last node\'s stop');

      fresh = new SessionEngine({ clock, store: createRedisStore({ redis: await r.client(), prefix: r.prefix }) });
      await visit(fresh);
      assert.equal(use4D(fresh).WEB_GET_OPTION(Web_inactive_process_timeout), 480, 'the constructor\'s value (the default), not one of the stopped cluster\'s');
    } finally {
      letHookEnd();
      clock.advance(60_000);
      await Promise.all([a.stop(), fresh?.stop()]);
    }
  });
}

test('redis: an option set during the stop of a node that is not the last reaches the other node and stays in the cluster', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const a = new SessionEngine({ clock, store: createRedisStore({ redis: await r.client(), prefix: r.prefix }) });
  const b = new SessionEngine({ clock, store: createRedisStore({ redis: await r.client(), prefix: r.prefix }) });
  let c: SessionEngine | undefined;
  try {
    await Promise.all([visit(a), visit(b)]);
    const stopping = a.stop();
    use4D(a).WEB_SET_OPTION(Web_inactive_process_timeout, 9);
    await stopping;
    assert.ok(await eventually(() => use4D(b).WEB_GET_OPTION(Web_inactive_process_timeout) === 9, 3_000), 'b took it');
    c = new SessionEngine({ clock, store: createRedisStore({ redis: await r.client(), prefix: r.prefix }) });
    await visit(c);
    assert.equal(use4D(c).WEB_GET_OPTION(Web_inactive_process_timeout), 9, 'a node joining the running cluster takes it');
  } finally {
    clock.advance(60_000);
    await Promise.all([a.stop(), b.stop(), c?.stop()]);
  }
});
