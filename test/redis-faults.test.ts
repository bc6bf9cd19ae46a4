// Faults of a Redis-backed cluster, with nodes as child processes (test/fixtures/redis-node.ts): a node
// killed with SIGKILL under load or in the middle of a hook, and Redis itself stopped and restarted (a
// redis-server of the test's own, test/fixtures/redis-server.ts; the shared one at REDIS_URL is only
// used under the test's key prefix). Node liveness is real time by design (nodeLeaseMs), so waits for a
// dead node's lease are bounded polls; session time is the test's clock, moved on every live node.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { Cluster, clusterForTest, waitUntil, type Answer, type ClusterOptions, type HookRecord, type TestNode } from './fixtures/redis-cluster.js';
import { ownRedisForTest, type OwnRedis } from './fixtures/redis-server.js';

const LEASE_MS = 1_000;
const SWEEP_MS = 1_000;

/** Moves session time on every live node, every `everyMs` of real time, so their sweeps run (and find dead nodes). */
function tickClocks(cluster: Cluster, everyMs = 50): { stop(): void } {
  let running = true;
  const loop = async (): Promise<void> => {
    while (running) {
      await cluster.advance(SWEEP_MS).catch(() => {});
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
  };
  void loop();
  return { stop: () => { running = false; } };
}

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

  const ticking = tickClocks(cluster);
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

  const ticking = tickClocks(cluster);
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
async function clusterOnOwnRedis(t: TestContext, options: ClusterOptions = {}): Promise<{ server: OwnRedis; cluster: Cluster } | undefined> {
  let cluster: Cluster | undefined;
  t.after(() => cluster?.dispose());
  const server = await ownRedisForTest(t);
  if (server === undefined) return undefined;
  // The test's reads wait through an outage rather than failing.
  const redis = new Redis(server.url, { maxRetriesPerRequest: 2 });
  redis.on('error', () => {});
  t.after(() => redis.disconnect());
  cluster = new Cluster(redis, server.url, 'lws-test:own:', options);
  return { server, cluster };
}

/** Waits until every node answers again (Redis back, clients reconnected): a new session gets 200 on each. */
async function untilServing(nodes: TestNode[]): Promise<void> {
  for (const node of nodes) await waitUntil(`${node.name} serving again`, async () => (await node.get('/', undefined, 5_000)).status === 200, 15_000, 50);
}

test('Redis stopped and restarted: requests get 503 with Retry-After meanwhile (no hang, no 500); afterwards every session is back with its vars on every node, and no hook ran twice', { timeout: 60_000 }, async (t) => {
  const setup = await clusterOnOwnRedis(t, { pollIntervalMs: 20, nodeLeaseMs: 10_000 });
  if (setup === undefined) return;
  const { server, cluster } = setup;
  const [a, b] = (await cluster.start(2)) as [TestNode, TestNode];

  const sessions: { sid: string; n: number }[] = [];
  for (let i = 0; i < 8; i++) {
    let v = await [a, b][i % 2]!.visit('/');
    for (let k = 0; k < i % 3; k++) v = await [b, a][k % 2]!.visit('/', v.sid);
    await cluster.settled(v.sid);
    sessions.push({ sid: v.sid, n: v.n });
  }
  const closed = sessions.pop()!;
  assert.equal(await b.call('close', { sid: closed.sid }), true);

  await server.stop();
  for (const node of [a, b]) {
    for (const sid of [sessions[0]!.sid, undefined]) {
      const started = Date.now();
      const answer = await node.get('/', sid, 5_000);
      assert.equal(answer.status, 503, `${node.name} (cookie: ${sid === undefined ? 'none' : 'yes'}) while Redis is away: ${answer.status} ${answer.body}`);
      assert.equal(answer.headers['retry-after'], '1');
      assert.equal(answer.setCookie, undefined);
      assert.ok(Date.now() - started < 5_000, 'answered at once');
    }
  }

  await server.start();
  await untilServing([a, b]);
  for (const [i, s] of sessions.entries()) {
    const node = [b, a][i % 2]!;
    const v = await node.visit('/', s.sid);
    assert.deepEqual([v.sid, v.n], [s.sid, s.n + 1], `${node.name}: the session is back with its vars`);
    const w = await [a, b][i % 2]!.visit('/', s.sid);
    assert.deepEqual([w.sid, w.n], [s.sid, s.n + 2]);
  }
  const hooks = await cluster.hooks();
  assert.deepEqual(hooks.map((h) => [h.sessionId, h.phase]), [[closed.sid, 'start'], [closed.sid, 'done']], 'only the close made before the outage, once');
  const gone = await a.get('/', closed.sid);
  assert.notEqual(gone.cookieId, closed.sid, 'a session closed before the outage stays closed');
});

test('a request that ends while Redis is away: once Redis is back, its session serves again with the state that request left (no request waits forever)', {
  timeout: 60_000,
}, async (t) => {
  const setup = await clusterOnOwnRedis(t, { pollIntervalMs: 20, nodeLeaseMs: 10_000 });
  if (setup === undefined) return;
  const { server, cluster } = setup;
  const [a, b] = (await cluster.start(2)) as [TestNode, TestNode];

  const s = await a.visit('/');
  await cluster.settled(s.sid);
  const holding = a.get('/hold?key=h', s.sid);
  await a.event((e) => e.event === 'held' && e.key === 'h', 'held h');
  await server.stop();
  await a.call('release', { key: 'h' });
  const held = await holding;
  assert.equal(held.status, 200);
  assert.equal(held.json<{ n: number }>().n, 3);

  await server.start();
  await untilServing([a, b]);
  for (const node of [b, a]) {
    const answer = await node.get('/', s.sid, 5_000);
    const taken = await cluster.redis.hget(`${cluster.storePrefix}s:${s.sid}`, `b:${s.pid}`);
    assert.equal(answer.status, 200, `${node.name}: ${answer.status}; its process in Redis: b:${s.pid}=${String(taken)} ('0' is free)`);
    assert.deepEqual([answer.json<{ sid: string }>().sid, answer.json<{ n: number }>().n], [s.sid, node === b ? 4 : 5], 'the state the answered request left');
  }
});

test('a close interrupted by a Redis outage is finished once Redis is back: the session\'s key goes, closeSession from another node returns, the hook ran once', {
  timeout: 60_000,
}, async (t) => {
  const setup = await clusterOnOwnRedis(t, { pollIntervalMs: 20, nodeLeaseMs: 10_000, sweepIntervalMs: SWEEP_MS });
  if (setup === undefined) return;
  const { server, cluster } = setup;
  const [a, b] = (await cluster.start(2)) as [TestNode, TestNode];

  const s = await a.visit('/');
  await cluster.settled(s.sid);
  await a.call('blockHooks', { all: true });
  const closing = a.call('close', { sid: s.sid }, 30_000);
  await a.event((e) => e.event === 'hook-blocked' && e.sessionId === s.sid, 'hook blocked');
  await server.stop();
  // The hook ends while Redis is away: marking it done fails, and so does the rest of the pipeline.
  await a.call('unblockHooks', { awaitLog: false });
  // The call itself may answer either way (closed, or the store's error); what matters is what follows.
  await closing.catch(() => {});

  await server.start();
  await untilServing([a, b]);
  const ticking = tickClocks(cluster);
  try {
    await waitUntil('the interrupted close finished', async () => (await cluster.keys(`s:${s.sid}`)).length === 0, 10_000, 50).catch(async (error: unknown) => {
      const [st, cl] = await cluster.redis.hmget(`${cluster.storePrefix}s:${s.sid}`, 'st', 'cl');
      throw new Error(`${(error as Error).message}; the session in Redis: st=${String(st)} (c: closing), claimed by a node alive: ${String(await cluster.redis.exists(`${cluster.storePrefix}node:${String(cl)}`) === 1)}`);
    });
  } finally {
    ticking.stop();
  }
  assert.equal(typeof await b.call('close', { sid: s.sid }, 5_000), 'boolean', 'closeSession returns');
  // 'start' is logged while Redis is up, so a second run would show; 'done' was logged during the outage
  // by a client of the test's, and may be lost with it.
  const hooks = (await cluster.hooks()).filter((h) => h.sessionId === s.sid);
  assert.equal(hooks.filter((h) => h.phase === 'start').length, 1, 'the hook ran once: the retry after the outage marks it done in Redis, it does not run it again');
  assert.ok(hooks.filter((h) => h.phase === 'done').length <= 1);
});

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
  const ticking = tickClocks(cluster);
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

test('a Redis outage longer than nodeLeaseMs does not make a live node dead: a request running on it through the outage keeps its process, and the next request of its session sees its state', {
  timeout: 60_000,
}, async (t) => {
  const setup = await clusterOnOwnRedis(t, { nodeLeaseMs: LEASE_MS, sweepIntervalMs: SWEEP_MS, pollIntervalMs: 20 });
  if (setup === undefined) return;
  const { server, cluster } = setup;
  const [a, b] = (await cluster.start(2)) as [TestNode, TestNode];
  const s = await a.visit('/');
  await cluster.settled(s.sid);
  const holding = a.get('/hold?key=h', s.sid);
  await a.event((e) => e.event === 'held' && e.key === 'h', 'held h');

  await server.stop();
  // The outage outlasts every node's lease (a duration of the scenario, not a wait for an outcome).
  await new Promise((resolve) => setTimeout(resolve, LEASE_MS * 1.5));
  // A reconnects a moment after B (stalled until B has swept a few times): A is alive all along.
  a.child.kill('SIGSTOP');
  t.after(() => { a.child.kill('SIGCONT'); });
  await server.start();
  await untilServing([b]);
  let sessionMs = cluster.nowMs;
  let ticking = true;
  const ticker = (async () => {
    while (ticking) {
      sessionMs += SWEEP_MS;
      await b.call('clock', { to: sessionMs }).catch(() => {});
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  let answeredEarly = false;
  let resumed = false;
  const next = b.get('/', s.sid, 20_000);
  void next.then(() => { answeredEarly = !resumed; });
  try {
    // A quarter of a lease after Redis is back, with B sweeping all along: A must still own its process
    // (and once resumed, it renews its lease well within the lease).
    const deadline = Date.now() + LEASE_MS / 4;
    await waitUntil('a quarter of a lease', () => answeredEarly || Date.now() >= deadline, LEASE_MS * 5, 20);
  } finally {
    resumed = true;
    a.child.kill('SIGCONT');
  }
  await a.call('release', { key: 'h' });
  const held = await holding;
  ticking = false;
  await ticker;
  const answer = await next;
  assert.equal(held.status, 200);
  assert.equal(answer.status, 200);
  assert.equal(answeredEarly, false, `B ran a request in the process A was still running (B saw n=${answer.json<{ n: number }>().n})`);
  assert.deepEqual([answer.json<{ sid: string }>().sid, answer.json<{ n: number }>().n], [s.sid, 4], 'the next request sees the state the held request left');
});
