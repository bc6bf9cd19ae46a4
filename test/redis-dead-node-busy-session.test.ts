// Invariant 4 on Redis across a node's death: a session (processesPerSession 2) with one request on a
// node that is killed and another still running on a live node. When the sweep frees the dead node's
// process, the session still has work under way: it must not go into the idle sets ('idle' decides
// timeouts, 'lru' eviction), or the live node's running request could be timed out or evicted under it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterForTest, waitUntil, type TestNode } from './fixtures/redis-cluster.js';
import { tickClocks } from './redis-cluster-support.js';

const LEASE_MS = 1_000;
const SWEEP_MS = 1_000;

test('kill -9 of a node running one of a session\'s two requests: once its process is freed, the session stays busy while the other node\'s request runs', { timeout: 60_000 }, async (t) => {
  const setup = await clusterForTest(t, { nodeLeaseMs: LEASE_MS, sweepIntervalMs: SWEEP_MS, pollIntervalMs: 20, processesPerSession: 2 });
  if (setup === undefined) return;
  const { cluster } = setup;
  const [a, b] = (await cluster.start(2)) as [TestNode, TestNode];

  const first = await a.visit('/');
  await cluster.settled(first.sid);
  const onA = a.get('/hold?key=a', first.sid);
  await a.event((e) => e.event === 'held' && e.key === 'a', 'held on A');
  const onB = b.get('/hold?key=b', first.sid);
  await b.event((e) => e.event === 'held' && e.key === 'b', 'held on B');
  const key = `${cluster.storePrefix}s:${first.sid}`;
  const pids = (await cluster.redis.hget(key, 'pl'))!.split(' ');
  assert.equal(pids.length, 2, 'two processes, one running on each node');

  a.kill('SIGKILL');
  await a.exited;
  assert.equal((await onA).status, 'error', 'the request on A died with it');

  const ticking = tickClocks(cluster, SWEEP_MS);
  try {
    // The sweep frees A's process once A's lease has ended.
    await waitUntil('A\'s process freed', async () => {
      const busy = await Promise.all(pids.map((pid) => cluster.redis.hget(key, `b:${pid}`)));
      return busy.filter((b) => b === '0').length === 1;
    }, 15_000);
    assert.equal(await cluster.redis.zscore(`${cluster.storePrefix}idle`, first.sid), null, 'not idle: B\'s request still runs (no timeout can close it)');
    assert.equal(await cluster.redis.zscore(`${cluster.storePrefix}lru`, first.sid), null, 'not evictable while B\'s request runs');
  } finally {
    ticking.stop();
    await b.call('release', { key: 'b' }).catch(() => undefined);
  }
  assert.equal((await onB).status, 200);
  assert.deepEqual(await cluster.hooks(), [], 'no session was closed');
});
