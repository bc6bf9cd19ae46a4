// Several nodes (child processes, test/fixtures/redis-node.ts) on one Redis: how nodes start and stop,
// alone, one after another (a rolling restart) or all at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterForTest, type TestNode, type Visit } from './fixtures/redis-cluster.js';
import { hooksOf } from './redis-cluster-support.js';

// onStop 'auto' closes the sessions when the stopping node is the last one alive. Both tests use a long
// lease (heartbeats 20 s apart), so "alive" must be decided at stop time, not from the last heartbeat.

test('onStop auto: a node that stops while another node is alive keeps every session (a rolling restart), even when it has not heard of that node yet', {
  timeout: 60_000,
}, async (t) => {
  const setup = await clusterForTest(t, { nodeLeaseMs: 60_000, pollIntervalMs: 20 });
  if (setup === undefined) return;
  const { cluster } = setup;
  const [a] = (await cluster.start(1)) as [TestNode];
  const [b] = (await cluster.start(1)) as [TestNode];
  const sessions = [await a.visit('/'), await b.visit('/'), await a.visit('/')];
  for (const s of sessions) await cluster.settled(s.sid);

  await a.stop();
  assert.deepEqual(await cluster.hooks(), [], 'no session closed: B is alive');
  for (const s of sessions) {
    const visit = await b.visit('/', s.sid);
    assert.deepEqual([visit.sid, visit.n], [s.sid, s.n + 1], 'B serves the session with its vars');
  }
});

test('onStop auto: the last node to stop closes every session with \'shutdown\', even right after the others stopped', {
  timeout: 60_000,
}, async (t) => {
  const setup = await clusterForTest(t, { nodeLeaseMs: 60_000, pollIntervalMs: 20 });
  if (setup === undefined) return;
  const { cluster } = setup;
  // A beats often (it knows B is alive when it stops); B beats every 20 s.
  const [a] = (await cluster.start(1, { nodeLeaseMs: 600 })) as [TestNode];
  const leaseOfA = await cluster.keys('node:*');
  const [b] = (await cluster.start(1)) as [TestNode];
  const sessions = [await a.visit('/'), await b.visit('/'), await b.visit('/')];
  for (const s of sessions) await cluster.settled(s.sid);
  await cluster.renewed(leaseOfA); // A has beaten since B joined

  await a.stop();
  assert.deepEqual(await cluster.hooks(), [], 'A keeps the sessions: B is alive');
  await b.stop();
  const hooks = await cluster.hooks();
  for (const s of sessions) {
    const { start, done } = hooksOf(hooks, s.sid);
    assert.deepEqual([start.length, done.length, done[0]?.reason, done[0]?.vars.n], [1, 1, 'shutdown', s.n], `${s.sid} closed once by the last node`);
  }
});


test('a node whose closeTimeoutMs is longer than 2^31 ms (24.8 days; up to 366 days is valid) starts its store: it registers, heartbeats and sweeps before any request', {
  timeout: 30_000,
}, async (t) => {
  const setup = await clusterForTest(t, { closeTimeoutMs: 30 * 24 * 3_600_000 });
  if (setup === undefined) return;
  const { cluster } = setup;
  try {
    await cluster.start(1, {}, 3_000);
  } catch (error) {
    assert.fail(`${(error as Error).message}; the node's stderr: ${cluster.nodes[0]?.stderr.trim()}`);
  }
});

test('onStop auto: every node stopped at the same moment (a whole deployment going down): each session is closed once with \'shutdown\'', {
  timeout: 60_000,
}, async (t) => {
  const setup = await clusterForTest(t, { nodeLeaseMs: 600, pollIntervalMs: 20 });
  if (setup === undefined) return;
  const { cluster } = setup;
  const nodes = await cluster.start(3);
  const sessions: Visit[] = [];
  for (let i = 0; i < 6; i++) {
    const v = await nodes[i % 3]!.visit('/');
    await cluster.settled(v.sid);
    sessions.push(v);
  }
  // Every node has heard of every other one.
  await cluster.renewed(await cluster.keys('node:*'));

  await Promise.all(nodes.map((node) => node.stop()));
  const hooks = await cluster.hooks();
  const missing = sessions.filter((s) => hooksOf(hooks, s.sid).done.length !== 1);
  assert.deepEqual(missing.map((s) => s.sid), [], `every session closed once (${hooks.filter((h) => h.phase === 'done').length} hook(s) for ${sessions.length} sessions)`);
  assert.ok(hooks.every((h) => h.reason === 'shutdown'));
  assert.equal(hooks.length, sessions.length * 2, 'no hook twice');
});
