// onStop 'auto' when a node of the cluster died (SIGKILL, a crash) shortly before the others stop: the
// dead node's lease key lives on for up to nodeLeaseMs, and the last live node must not take it for a
// node that will go on serving the sessions. Found with node:cluster (a worker crashed, then SIGTERM to
// the primary within the lease): every session was kept in Redis, no 'shutdown' hook ran, nothing reported.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterForTest, type TestNode } from './fixtures/redis-cluster.js';
import { hooksOf } from './redis-cluster-support.js';

test('onStop auto: the last live node stops right after another node was killed: every session closes once with \'shutdown\'', {
  timeout: 60_000,
}, async (t) => {
  // A lease of 3 s: the dead node's key outlives the stop below unless the stop looks at it again.
  const setup = await clusterForTest(t, { nodeLeaseMs: 3_000, pollIntervalMs: 20 });
  if (setup === undefined) return;
  const { cluster } = setup;
  const [a, b] = (await cluster.start(2)) as [TestNode, TestNode];
  const sessions = [await a.visit('/'), await b.visit('/'), await a.visit('/'), await b.visit('/')];
  for (const s of sessions) await cluster.settled(s.sid);
  await cluster.renewed(await cluster.keys('node:*')); // each node has beaten since the other joined

  a.kill('SIGKILL');
  await a.exited;
  await b.stop(30_000); // the whole deployment goes down: B is the last node alive

  const hooks = await cluster.hooks();
  for (const s of sessions) {
    const { start, done } = hooksOf(hooks, s.sid);
    assert.deepEqual([start.length, done.length, done[0]?.reason], [1, 1, 'shutdown'], `${s.sid} closed once with 'shutdown' by the last live node (hooks: ${hooks.length})`);
  }
});
