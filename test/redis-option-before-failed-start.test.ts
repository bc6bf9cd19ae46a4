// An option set on a node before its store has started is written to the cluster once it has (README:
// setOption on one node applies on every node). A start that fails (Redis away when the node came up) is
// tried again by the next request: the option must reach the cluster then, not stay on this node alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { IP, node, stopAll, wrapScript, type Vars } from './redis-crossing.js';

test('redis: an option set before a store start that fails reaches the cluster once a later start succeeds', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const client = await r.client();
  const a = new SessionEngine<Vars>({ clock, closeTimeoutMs: 10_000, store: createRedisStore({ redis: client, prefix: r.prefix, pollIntervalMs: 5, sweepIntervalMs: 1_000 }) });
  const errors: unknown[] = [];
  a.on('error', (error) => errors.push(error));
  // The first start's heartbeat fails (Redis away for it); the next start's goes through.
  let beats = 0;
  wrapScript(client, 'lwsHeartbeat', (original) => async (...args) => {
    if (++beats === 1) throw new Error('connection lost');
    return original(...args);
  });
  a.setOption('maxSessions', 5);
  const b = await node(r, clock);
  try {
    assert.ok(await eventually(() => beats === 1 && errors.length > 0, 3_000), `the first start failed: ${beats} heartbeat(s), ${errors.length} error(s)`);
    (await a.acquire({ sessionId: undefined, ip: IP })).release(); // the start tried again, and done
    (await b.engine.acquire({ sessionId: undefined, ip: IP })).release();
    assert.equal(a.getOption('maxSessions'), 5, 'a keeps its value');
    const shared = await eventually(async () => (await r.redis.hget(`${r.prefix}opts`, 'maxSessions')) === '5' && b.engine.getOption('maxSessions') === 5, 3_000);
    assert.ok(shared, `the cluster has a's value: Redis ${String(await r.redis.hget(`${r.prefix}opts`, 'maxSessions'))}, b ${b.engine.getOption('maxSessions')}`);
  } finally {
    await stopAll(clock, [], undefined, { engine: a, client, errors: [], hooked: [] }, b);
  }
});
