// A session regenerated again and again while its work runs keeps a forward from each of its latest
// old ids (P mv:<old>) alive as long as that work runs: its hash lists the latest 8 (mf), newest last,
// and each heartbeat of the node running the work renews them. Here the forwards' remaining life is cut in
// Redis and the heartbeat (every nodeLeaseMs / 3, real time) must give each of the 8 a full life again.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type SessionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { deferred, eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';

const IP = '127.0.0.1';
const NODE_LEASE_MS = 600; // a heartbeat every 200 ms
const CUT_TO_MS = 1_500;

type Vars = { done?: string };

test('Redis store: nine regenerates while a task runs: the forwards from the latest 8 old ids are renewed by the heartbeat, each still leading to the session', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const engine = new SessionEngine<Vars>({
    clock: new ManualClock(), init: () => ({}),
    store: createRedisStore({ url: r.url, prefix: r.prefix, nodeLeaseMs: NODE_LEASE_MS, pollIntervalMs: 20 }),
  });
  const errors: SessionError[] = [];
  engine.on('error', (error) => errors.push(error));
  const gate = deferred();
  const started = deferred();
  try {
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    const ids = [lease.sessionId];
    lease.proc.spawn('report', async () => { started.resolve(); await gate.promise; });
    await started.promise;
    for (let i = 0; i < 9; i++) {
      const next = await lease.run(() => engine.regenerate(ids.at(-1)!));
      assert.ok(typeof next === 'string' && !ids.includes(next));
      ids.push(next);
    }
    lease.release();
    const latest = ids.at(-1)!;
    const forwards = ids.slice(1, -1).map((id) => `${r.prefix}mv:${id}`); // the latest 8 old ids
    assert.equal(forwards.length, 8);
    for (const forward of forwards) {
      assert.ok(await r.redis.get(forward) !== null, `the rename left a forward (${forward})`);
      assert.equal(await r.redis.pexpire(forward, CUT_TO_MS), 1);
    }
    for (const forward of forwards) {
      assert.ok(await eventually(async () => await r.redis.pttl(forward) > CUT_TO_MS, 3 * CUT_TO_MS), `renewed: ${forward}, PTTL ${await r.redis.pttl(forward)}`);
    }
    gate.resolve();
    assert.ok(await eventually(() => engine.sessionProcessCount(latest) === 1), 'the task\'s process ended under the latest id');
  } finally {
    gate.resolve();
    await engine.stop();
  }
  assert.deepEqual(errors.map((e) => e.code), []);
});
