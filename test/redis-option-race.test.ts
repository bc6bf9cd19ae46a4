// One option set on two nodes at about the same time (README: setOption on one node applies on every
// node): Redis takes one write after the other, and each node must end with the value Redis took last,
// whatever order its own write's reply and the other node's announcement reach it in. Each write of a
// name has a version (P optv: Redis's time), announced with it; a node applies only a newer one than it
// holds, also once the versions were lost in Redis while the nodes stayed up.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../src/index.js';
import { eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { IP, node, stopAll, wrapScript } from './redis-crossing.js';

test('redis: inactiveProcessTimeoutMs set to two values on two nodes in the same turn, mode to scalable on one and legacy on the other: every node ends with what Redis holds', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const a = await node(r, clock);
  const b = await node(r, clock);
  const c = await node(r, clock);
  const nodes = [a, b, c];
  try {
    for (const n of nodes) (await n.engine.acquire({ sessionId: undefined, ip: IP })).release(); // started
    let answered = 0;
    for (const n of nodes) {
      wrapScript(n.client, 'lwsSetOption', (original) => async (...args) => {
        const reply = await original(...args);
        answered++;
        return reply;
      });
    }
    a.engine.setOption('inactiveProcessTimeoutMs', 5 * 60_000);
    b.engine.setOption('inactiveProcessTimeoutMs', 7 * 60_000);
    c.engine.setOption('inactiveProcessTimeoutMs', 9 * 60_000);
    a.engine.setOption('mode', 'scalable');
    b.engine.setOption('mode', 'legacy');
    const stored = async (name: string): Promise<unknown> => JSON.parse(await r.redis.hget(`${r.prefix}opts`, name) ?? 'null');
    assert.ok(await eventually(() => answered === 5, 3_000), 'every write landed');
    const timeout = await stored('inactiveProcessTimeoutMs');
    const mode = await stored('mode');
    const agree = (): boolean => nodes.every((n) => n.engine.getOption('inactiveProcessTimeoutMs') === timeout && n.engine.getOption('mode') === mode);
    assert.ok(await eventually(agree, 3_000), `Redis holds ${String(timeout)}/${String(mode)}; the nodes: ${nodes.map((n) => `${n.engine.getOption('inactiveProcessTimeoutMs')}/${n.engine.getOption('mode')}`).join(', ')}`);
    assert.deepEqual(nodes.flatMap((n) => n.errors), []);
  } finally {
    await stopAll(clock, [], undefined, a, b, c);
  }
});

test('redis: the options\' versions lost in Redis (a restart without persistence, a flush) while the nodes stay up: the next setOption on any node still applies on every node', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const a = await node(r, clock);
  const b = await node(r, clock);
  try {
    for (const n of [a, b]) (await n.engine.acquire({ sessionId: undefined, ip: IP })).release();
    for (const minutes of [5, 6, 7]) {
      a.engine.setOption('inactiveProcessTimeoutMs', minutes * 60_000);
      assert.ok(await eventually(() => b.engine.getOption('inactiveProcessTimeoutMs') === minutes * 60_000, 3_000), `b follows ${minutes} min`);
    }
    await r.redis.del(`${r.prefix}opts`, `${r.prefix}optv`);
    a.engine.setOption('inactiveProcessTimeoutMs', 9 * 60_000);
    assert.ok(await eventually(() => b.engine.getOption('inactiveProcessTimeoutMs') === 9 * 60_000, 3_000), `b follows 9 min: ${b.engine.getOption('inactiveProcessTimeoutMs')}`);
    b.engine.setOption('inactiveProcessTimeoutMs', 11 * 60_000);
    assert.ok(await eventually(() => a.engine.getOption('inactiveProcessTimeoutMs') === 11 * 60_000, 3_000), 'and a follows b');
    assert.deepEqual([...a.errors, ...b.errors], []);
  } finally {
    await stopAll(clock, [], undefined, a, b);
  }
});
