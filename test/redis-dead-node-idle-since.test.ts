// A session whose request or task dies with its node (kill -9) is idle, once the sweep frees that process, from
// when? The sweep put it in the idle sets scored by 'la', the end of the request BEFORE the one that
// died: the dying request's own activity (its start, 'lr') did not count. A session idle for most of its
// timeout, then active on a node that dies, was timed out by the very next sweep after the takeover,
// though it had been in use far less than inactiveProcessTimeoutMs before (README: 'timeout' is "idle
// longer than inactiveProcessTimeoutMs"; a session with work under way is never timed out).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { clusterForTest, waitUntil, type TestNode } from './fixtures/redis-cluster.js';
import { tickClocks } from './redis-cluster-support.js';

const TIMEOUT_MS = 10_000;
const SWEEP_MS = 100;

type Cluster = NonNullable<Awaited<ReturnType<typeof clusterForTest>>>['cluster'];

/** Two nodes (A, B) with a 10 s timeout and 1 s leases, and a session made on A. */
async function sessionOnA(t: TestContext): Promise<{ cluster: Cluster; a: TestNode; sid: string; pid: string } | undefined> {
  const setup = await clusterForTest(t, { nodeLeaseMs: 1_000, sweepIntervalMs: SWEEP_MS, pollIntervalMs: 20, inactiveProcessTimeoutMs: TIMEOUT_MS });
  if (setup === undefined) return undefined;
  const { cluster } = setup;
  const [a] = (await cluster.start(2)) as [TestNode, TestNode];
  const s = await a.visit('/');
  await cluster.settled(s.sid);
  return { cluster, a, sid: s.sid, pid: s.pid };
}

/** Once A is dead: session time runs about as fast as real time until B's sweep has freed `pid`, then five more sweeps. */
async function afterTakeover(cluster: Cluster, sid: string, pid: string): Promise<void> {
  const key = `${cluster.storePrefix}s:${sid}`;
  const ticking = tickClocks(cluster, SWEEP_MS, SWEEP_MS);
  try {
    await waitUntil('A\'s process freed', async () => (await cluster.redis.hget(key, `b:${pid}`)) === '0', 15_000);
    for (let i = 0; i < 5; i++) await cluster.advance(SWEEP_MS);
    await new Promise((resolve) => setTimeout(resolve, 200));
  } finally {
    ticking.stop();
  }
}

test('kill -9 of the node running a session\'s request: once its process is freed, the session is idle from then on, not from the request before', { timeout: 60_000 }, async (t) => {
  const made = await sessionOnA(t);
  if (made === undefined) return;
  const { cluster, a, sid, pid } = made;
  await cluster.advance(TIMEOUT_MS - 1_000); // idle for most of its timeout, not due yet
  const onA = a.get('/hold?key=a', sid);
  await a.event((e) => e.event === 'held' && e.key === 'a', 'held on A');
  const startedAt = cluster.nowMs; // the request's start, in session time
  a.kill('SIGKILL');
  await a.exited;
  assert.equal((await onA).status, 'error', 'the request on A died with it');
  await afterTakeover(cluster, sid, pid);
  const idleFor = cluster.nowMs - startedAt;
  assert.ok(idleFor < TIMEOUT_MS, `the test's premise: ${idleFor} ms of session time since the request started`);
  assert.equal(await cluster.isOpen(sid), true, `still open ${idleFor} ms after its last request started (hooks: ${JSON.stringify(await cluster.hooks())})`);
});

test('kill -9 of the node running a session\'s long task: once its process is freed, the session is idle from then on, not from the request that spawned the task', { timeout: 60_000 }, async (t) => {
  const made = await sessionOnA(t);
  if (made === undefined) return;
  const { cluster, a, sid } = made;
  const held = a.event((e) => e.event === 'held' && e.key === 'task', 'the task runs on A');
  assert.equal((await a.get('/spawnHold?key=task', sid)).status, 200);
  const task = await held;
  await cluster.advance(TIMEOUT_MS * 3); // the task runs three timeouts long: its session is busy, not timed out
  assert.equal(await cluster.isOpen(sid), true, 'busy while its task runs');
  a.kill('SIGKILL');
  await a.exited;
  await afterTakeover(cluster, sid, String(task.pid));
  assert.equal(await cluster.isOpen(sid), true, `still open right after its task died (hooks: ${JSON.stringify(await cluster.hooks())})`);
});
