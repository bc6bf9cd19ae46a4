// onStop 'auto' when a node was killed (SIGKILL) in the middle of a close it had claimed, and the last
// live node stops before any sweep has taken that close over (a sweep takes a node for dead only after
// its lease has been missing for one more lease; the stop waits for the dead node's lease key alone).
// The stopping node claims every open session for 'shutdown' (CLAIM_ALL), but the dead node's close is
// no longer open: nobody runs it, its hooks never run (the one the node was running not again, the
// others not at all), and its keys stay in Redis, 'closing' under a dead claimer, until they expire.
// README: "the last node closes them right after another node was killed"; "A node dies during a hook:
// ... another node takes the close over and runs the hooks not yet marked done".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterForTest, type TestNode } from './fixtures/redis-cluster.js';
import { hooksOf, tickClocks } from './redis-cluster-support.js';

test('onStop auto: the last live node stops right after a node was killed mid-hook: the dead node\'s close is run, every hook once at least', {
  timeout: 60_000,
}, async (t) => {
  // B sweeps all along (its session clock moves every 50 ms): a sweep takes A for dead only a lease
  // after it first finds A's key gone, and B's stop ends well before that.
  const setup = await clusterForTest(t, { nodeLeaseMs: 3_000, pollIntervalMs: 20, sweepIntervalMs: 100 });
  if (setup === undefined) return;
  const { cluster } = setup;
  const [a, b] = (await cluster.start(2)) as [TestNode, TestNode];
  const s = await a.visit('/');
  await cluster.settled(s.sid);
  const other = await b.visit('/');
  await cluster.settled(other.sid);
  await cluster.renewed(await cluster.keys('node:*'));

  await a.call('blockHooks', { all: true });
  void a.call('close', { sid: s.sid }).catch(() => {});
  await a.event((e) => e.event === 'hook-blocked' && e.sessionId === s.sid, 'hook blocked on A');
  a.kill('SIGKILL');
  await a.exited;
  const ticking = tickClocks(cluster, 100);
  try {
    await b.stop(30_000); // the whole deployment goes down: B is the last node alive
  } finally {
    ticking.stop();
  }

  const hooks = await cluster.hooks();
  const closed = hooksOf(hooks, s.sid);
  assert.equal(hooksOf(hooks, other.sid).done.length, 1, 'the open session closed with \'shutdown\'');
  assert.ok(closed.done.length >= 1, `the close A claimed and died in is run to its end by the last node (hooks of ${s.sid}: ${JSON.stringify(closed)})`);
  assert.deepEqual(await cluster.keys(`s:${s.sid}`), [], 'its key is gone');
});
