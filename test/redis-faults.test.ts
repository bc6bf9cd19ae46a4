// Faults of a Redis-backed cluster, with nodes as child processes (test/fixtures/redis-node.ts): a node
// killed with SIGKILL under load, in the middle of a hook, or with a request waiting for another node's
// process, and a node stopping with such a request. Redis itself stopped and restarted: redis-outage.test.ts.
// Node liveness is real time by design (nodeLeaseMs), so waits for a dead node's lease are bounded polls;
// session time is the test's clock, moved on every live node.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster, clusterForTest, waitUntil, type Answer, type HookRecord, type TestNode } from './fixtures/redis-cluster.js';
import { tickClocks } from './redis-cluster-support.js';

const LEASE_MS = 1_000;
const SWEEP_MS = 1_000;


function recordsOf(hooks: HookRecord[], processId: string): { start: HookRecord[]; done: HookRecord[] } {
  const mine = hooks.filter((h) => h.processId === processId);
  return { start: mine.filter((h) => h.phase === 'start'), done: mine.filter((h) => h.phase === 'done') };
}

test('kill -9 of a node under load: the other nodes serve its sessions with the state last saved at once, the processes it was running are freed once its lease has ended, no hook runs', { timeout: 60_000 }, async (t) => {
  const setup = await clusterForTest(t, { nodeLeaseMs: LEASE_MS, sweepIntervalMs: SWEEP_MS, pollIntervalMs: 20 });
  if (setup === undefined) return;
  const { cluster } = setup;
  const nodes = (await cluster.start(3)) as [TestNode, TestNode, TestNode];
  const [a, b, c] = nodes;

  // Per session: the values its n may have in Redis (more than one when its last request ran on A,
  // whose release may not have landed before the kill).
  interface Tracked { sid: string; pid: string; n: number; possible: number[] }
  const sessions: Tracked[] = [];
  for (let i = 0; i < 23; i++) {
    const v = await nodes[i % 3]!.visit('/');
    await cluster.settled(v.sid);
    sessions.push({ sid: v.sid, pid: v.pid, n: v.n, possible: [v.n] });
  }
  // Three requests held on A: their changes are never saved.
  const held = sessions.slice(0, 3);
  const holds = held.map((s, i) => a.get(`/hold?key=k${i}`, s.sid));
  await Promise.all(held.map((_, i) => a.event((e) => e.event === 'held' && e.key === `k${i}`, `held k${i}`)));

  let killed = false;
  let completed = 0;
  const live = (): TestNode[] => (killed ? [b, c] : nodes);
  const worker = async (mine: Tracked[], w: number): Promise<void> => {
    for (let i = 0; !killed || i % 12 !== 0; i++) {
      const s = mine[i % mine.length]!;
      const targets = live();
      const node = targets[(i + w) % targets.length]!;
      const before = s.possible;
      const answer = await node.get('/', s.sid, 20_000);
      if (answer.status === 200) {
        const got = answer.json<{ sid: string; n: number }>();
        assert.equal(got.sid, s.sid, `${node.name}: the session lives on`);
        assert.ok(before.includes(got.n - 1), `${node.name}: n=${got.n} after one of ${JSON.stringify(before)}`);
        s.n = got.n;
        s.possible = node === a ? [got.n - 1, got.n] : [got.n];
        completed++;
      } else {
        assert.equal(node, a, `only requests to the killed node fail: ${node.name} answered ${answer.status} ${answer.error ?? ''}`);
        s.possible = [...new Set([...before, ...before.map((n) => n + 1)])];
      }
    }
  };
  const load = Promise.all([0, 1, 2, 3].map((w) => worker(sessions.slice(3 + w * 5, 8 + w * 5), w)));
  await waitUntil('200 requests under load', () => completed >= 200, 20_000);
  a.kill('SIGKILL');
  await a.exited;
  killed = true;

  // No sweep has run since (session time has not moved): A's processes are still taken in Redis.
  for (const s of held) assert.notEqual(await cluster.redis.hget(`${cluster.storePrefix}s:${s.sid}`, `b:${s.pid}`), '0', 'a dead node\'s process stays taken until its lease ends');
  for (const answer of await Promise.all(holds)) assert.equal(answer.status, 'error', 'the held requests died with their node');

  const ticking = tickClocks(cluster, SWEEP_MS);
  try {
    await load;
    // Every session, the held ones included, is served by B or C with the state last saved.
    const after = await Promise.all(sessions.map(async (s, i) => ({ s, v: await [b, c][i % 2]!.visit('/', s.sid) })));
    for (const { s, v } of after) {
      assert.equal(v.sid, s.sid);
      assert.ok(s.possible.includes(v.n - 1), `${s.sid}: n=${v.n} after one of ${JSON.stringify(s.possible)}`);
    }
    for (const [i, s] of held.entries()) assert.equal(after[i]!.v.n, s.n + 1, 'a held request\'s changes died with its node: the state is the one saved before it');
  } finally {
    ticking.stop();
  }
  await waitUntil('the dead node forgotten', async () => (await cluster.redis.scard(`${cluster.storePrefix}nodes`)) === 2, 10_000);
  assert.deepEqual(await cluster.hooks(), [], 'no session was closed');
});

test('kill -9 of a node in the middle of a hook: another node takes the close over, runs the hook again only for the process whose hook had not finished, and frees its records', { timeout: 60_000 }, async (t) => {
  const setup = await clusterForTest(t, { nodeLeaseMs: LEASE_MS, sweepIntervalMs: SWEEP_MS, pollIntervalMs: 20, processesPerSession: 2 });
  if (setup === undefined) return;
  const { cluster } = setup;
  const [a, b] = (await cluster.start(2)) as [TestNode, TestNode];

  // A session with two processes: a request held in the first while a second request runs.
  const first = await a.visit('/');
  const holding = a.get('/hold?key=h', first.sid);
  await a.event((e) => e.event === 'held' && e.key === 'h', 'held h');
  const second = await a.visit('/lock?table=Stock&key=9', first.sid);
  assert.equal(second.sid, first.sid);
  assert.notEqual(second.pid, first.pid, 'a second process of the session');
  assert.equal(second.locked, true, 'the second process holds a record');
  await a.call('release', { key: 'h' });
  assert.equal((await holding).status, 200);
  await cluster.settled(first.sid);

  // Closes that finished before the kill must not run again.
  const other = await b.visit('/');
  const kept = await a.visit('/');
  await cluster.settled(other.sid);
  await cluster.settled(kept.sid);
  assert.equal(await a.call('close', { sid: other.sid }), true);

  await a.call('blockHooks', { processIds: [second.pid] });
  const closing = a.call('close', { sid: first.sid }).catch(() => 'node died');
  await a.event((e) => e.event === 'hook-blocked' && e.processId === second.pid, 'the second hook blocked');
  a.kill('SIGKILL');
  await a.exited;
  assert.equal(await closing, 'node died');
  const before = await cluster.hooks();
  assert.equal(recordsOf(before, second.pid).start.length, 1);
  assert.equal(recordsOf(before, second.pid).done.length, 0, 'killed mid-hook');
  assert.equal((await b.call<{ processId: string } | null>('lockedBy', { table: 'Stock', key: '9' }))?.processId, second.pid, 'the record stays locked until the close ends');

  const ticking = tickClocks(cluster, SWEEP_MS);
  try {
    await waitUntil('B finishes the close A had claimed', async () => recordsOf(await cluster.hooks(), second.pid).done.length > 0, 15_000);
  } finally {
    ticking.stop();
  }
  await waitUntil('the closed session\'s key deleted', async () => (await cluster.keys(`s:${first.sid}`)).length === 0, 5_000);

  const hooks = await cluster.hooks();
  const firstHook = recordsOf(hooks, first.pid);
  assert.deepEqual([firstHook.start.length, firstHook.done.length, firstHook.done[0]?.node], [1, 1, 'A'], 'the finished hook did not run again');
  assert.deepEqual(firstHook.done[0]?.vars, { n: 3, tag: 'h' });
  const secondHook = recordsOf(hooks, second.pid);
  assert.deepEqual(secondHook.start.map((h) => h.node), ['A', 'B'], 'the unfinished hook ran again, on B');
  assert.deepEqual(secondHook.done.map((h) => [h.node, h.reason, h.vars]), [['B', 'closed', { n: 0 }]], 'with the saved state and the reason of the claim');
  assert.equal(await b.call('lockedBy', { table: 'Stock', key: '9' }), null, 'the record of the process closed by B is free');
  const otherHook = recordsOf(hooks, (hooks.find((h) => h.sessionId === other.sid))!.processId);
  assert.deepEqual([otherHook.start.length, otherHook.done.length], [1, 1], 'a close that had finished on A is not repeated');
  assert.equal(hooks.length, 7, `no other hook: ${JSON.stringify(hooks.map((h) => [h.processId, h.phase, h.node]))}`);

  const fresh = await b.visit('/', first.sid);
  assert.notEqual(fresh.sid, first.sid, 'the closed id gets a new session');
  const again = await b.visit('/', kept.sid);
  assert.deepEqual([again.sid, again.n], [kept.sid, kept.n + 1], 'a session A served lives on with its vars');
});

/** A cluster on a redis-server of the test's own (the shared Redis is not stopped by anyone). */

/**
 * A request of a session waits on `waiter` for the process `holder` runs (maxQueuedRequests 1); `end`
 * ends `waiter`; `check` judges the waiting request's answer. Then, within a bounded time, the session
 * must queue a request again (on `third`) behind its busy process instead of answering 503: a waiter
 * that is gone must stop counting.
 */
async function waiterGone(cluster: Cluster, [holder, waiter, third]: [TestNode, TestNode, TestNode], end: () => Promise<void>, check: (answer: Answer) => void): Promise<void> {
  await holder.call('setOption', { name: 'maxQueuedRequests', value: 1 });
  await waitUntil('the queue bound on every node', async () => (await third.call('getOption', { name: 'maxQueuedRequests' })) === 1 && (await waiter.call('getOption', { name: 'maxQueuedRequests' })) === 1);
  const s = await holder.visit('/');
  await cluster.settled(s.sid);
  const hold = holder.get('/hold?key=h', s.sid);
  await holder.event((e) => e.event === 'held' && e.key === 'h', 'held h');
  const waiting = waiter.get('/', s.sid);
  await waitUntil(`a request queued on ${waiter.name}`, async () => (await waiter.call<{ queuedRequests: number }>('stats')).queuedRequests === 1);
  await end();
  check(await waiting);
  await holder.call('release', { key: 'h' });
  assert.equal((await hold).status, 200);
  await cluster.settled(s.sid);

  let attempt = 0;
  let last = '';
  const ticking = tickClocks(cluster, SWEEP_MS);
  try {
    await waitUntil('the session queuing a request again', async () => {
      const key = `again${++attempt}`;
      const busy = holder.get(`/hold?key=${key}`, s.sid);
      await holder.event((e) => e.event === 'held' && e.key === key, `held ${key}`);
      const queued = third.get('/', s.sid, 10_000);
      let answered = false;
      void queued.then(() => { answered = true; });
      await waitUntil(`the request queued on ${third.name}, or answered`, async () => answered || (await third.call<{ queuedRequests: number }>('stats')).queuedRequests === 1);
      await holder.call('release', { key });
      const answer = await queued;
      assert.equal((await busy).status, 200);
      await cluster.settled(s.sid);
      last = `${answer.status} ${answer.body.trim()}`;
      if (answer.status !== 200) return false;
      assert.equal(answer.json<{ sid: string }>().sid, s.sid);
      return true;
    }, 10_000, 100).catch((error: unknown) => assert.fail(`${(error as Error).message}: after ${attempt} tries, still ${last}`));
  } finally {
    ticking.stop();
  }
}

test('kill -9 of a node with a request waiting for a session\'s process (run by another node): the dead node\'s waiter soon stops counting against the session\'s queue bound', {
  timeout: 60_000,
}, async (t) => {
  const setup = await clusterForTest(t, { nodeLeaseMs: LEASE_MS, sweepIntervalMs: SWEEP_MS, pollIntervalMs: 20 });
  if (setup === undefined) return;
  const { cluster } = setup;
  const [a, b, c] = (await cluster.start(3)) as [TestNode, TestNode, TestNode];
  await waiterGone(cluster, [b, a, c], async () => {
    a.kill('SIGKILL');
    await a.exited;
  }, (answer) => assert.equal(answer.status, 'error', 'the waiting request died with its node'));
});

test('a node stopping with a request waiting for a session\'s process (run by another node): the request gets 503 before stop() resolves, and stops counting against the session\'s queue bound', {
  timeout: 60_000,
}, async (t) => {
  const setup = await clusterForTest(t, { pollIntervalMs: 20 });
  if (setup === undefined) return;
  const { cluster } = setup;
  const [a, b, c] = (await cluster.start(3)) as [TestNode, TestNode, TestNode];
  // The fixture closes every connection once engine.stop() resolves: an unanswered request is reset.
  await waiterGone(cluster, [b, a, c], () => a.stop().then(() => {}), (answer) => assert.equal(answer.status, 503, `answered before stop() resolved: ${answer.status} ${answer.error ?? ''}`));
});
