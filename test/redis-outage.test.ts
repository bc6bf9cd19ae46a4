// Redis itself stopped and restarted under a cluster of nodes as child processes (test/fixtures/redis-node.ts),
// on a redis-server of the test's own (test/fixtures/redis-server.ts; the shared one at REDIS_URL is never
// stopped): 503s during the outage, recovery with every session and no hook twice, closes and requests
// that span the outage, and an outage longer than a node lease. Node faults: redis-faults.test.ts.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { Cluster, waitUntil, type ClusterOptions, type TestNode } from './fixtures/redis-cluster.js';
import { ownRedisForTest, type OwnRedis } from './fixtures/redis-server.js';
import { tickClocks } from './redis-cluster-support.js';

const LEASE_MS = 1_000;
const SWEEP_MS = 1_000;

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
  const ticking = tickClocks(cluster, SWEEP_MS);
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
