// One option set on two nodes at about the same time (README: setOption on one node applies on every
// node): Redis takes one write after the other, and each node must end with the value Redis took last,
// whatever order its own write's reply and the other node's announcement reach it in. Each write of a
// name has a version (P optv), announced with it; a node applies only a newer one than it holds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../src/index.js';
import { eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { IP, node, stopAll } from './redis-crossing.js';

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
    a.engine.setOption('inactiveProcessTimeoutMs', 5 * 60_000);
    b.engine.setOption('inactiveProcessTimeoutMs', 7 * 60_000);
    c.engine.setOption('inactiveProcessTimeoutMs', 9 * 60_000);
    a.engine.setOption('mode', 'scalable');
    b.engine.setOption('mode', 'legacy');
    const stored = async (name: string): Promise<unknown> => JSON.parse(await r.redis.hget(`${r.prefix}opts`, name) ?? 'null');
    assert.ok(await eventually(async () => Number(await r.redis.hget(`${r.prefix}optv`, 'inactiveProcessTimeoutMs')) === 3 && Number(await r.redis.hget(`${r.prefix}optv`, 'mode')) === 2, 3_000), 'every write landed');
    const timeout = await stored('inactiveProcessTimeoutMs');
    const mode = await stored('mode');
    const agree = (): boolean => nodes.every((n) => n.engine.getOption('inactiveProcessTimeoutMs') === timeout && n.engine.getOption('mode') === mode);
    assert.ok(await eventually(agree, 3_000), `Redis holds ${String(timeout)}/${String(mode)}; the nodes: ${nodes.map((n) => `${n.engine.getOption('inactiveProcessTimeoutMs')}/${n.engine.getOption('mode')}`).join(', ')}`);
    assert.deepEqual(nodes.flatMap((n) => n.errors), []);
  } finally {
    await stopAll(clock, [], undefined, a, b, c);
  }
});
