// stats().closed on the Redis store: each node counts the closes it claimed, once, whatever happens to
// the claim afterwards. A node that stalls past its lease while closing (SIGSTOP), whose close another
// node takes over and dies in (kill -9), finishes that close itself when it wakes: still one count.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterForTest, type TestNode } from './fixtures/redis-cluster.js';

const LEASE_MS = 1_000;

test('a node that stalls while closing, its close taken over by a node that then dies, finishes the close itself: counted once, where it was claimed', { timeout: 60_000 }, async (t) => {
  const setup = await clusterForTest(t, { nodeLeaseMs: LEASE_MS, sweepIntervalMs: 1_000, pollIntervalMs: 20 });
  if (setup === undefined) return;
  const { cluster, r } = setup;
  const [a, b] = (await cluster.start(2)) as [TestNode, TestNode];
  const key = (sid: string): string => `${cluster.storePrefix}s:${sid}`;

  const visit = await a.visit('/');
  await cluster.settled(visit.sid);
  await a.call('blockHooks', { all: true });
  await b.call('blockHooks', { all: true });
  void a.call('close', { sid: visit.sid }, 60_000).catch(() => {});
  await a.event((e) => e.event === 'hook-blocked', 'A runs the hook');
  assert.equal((await a.call<{ closed: { closed: number } }>('stats')).closed.closed, 1, 'counted at the claim');

  a.child.kill('SIGSTOP'); // stalled past its lease: taken for dead
  try {
    const tookOver = async (): Promise<boolean> => b.event((e) => e.event === 'hook-blocked', 'B runs the hook', 50).then(() => true, () => false);
    let taken = false;
    for (let i = 0; i < 150 && !(taken = await tookOver()); i++) await cluster.advanceOn([b], 1_000);
    assert.ok(taken, 'B took the close over');
    b.kill('SIGKILL');
    await b.exited;
  } finally {
    a.child.kill('SIGCONT');
  }
  await a.call('unblockHooks', {});
  // A's sweep finds B dead (its lease, in Redis's real time, runs out) and takes the close over from it.
  for (let i = 0; i < 200 && (await r.redis.exists(key(visit.sid))) === 1; i++) {
    await cluster.advanceOn([a], 1_000);
    await a.call('unblockHooks', {});
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.equal(await r.redis.exists(key(visit.sid)), 0, 'the close ended');
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal((await a.call<{ closed: { closed: number } }>('stats')).closed.closed, 1, 'still one count on A');
});
