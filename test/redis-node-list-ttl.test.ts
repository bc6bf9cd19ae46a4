// A node's list of what it runs (P nb:<node>) gets its lifetime from the node's heartbeats (every third
// of nodeLeaseMs). A set Redis makes afresh (the node's first work, or its first after the list emptied,
// which deletes it) must have one from the start: a node killed before its next heartbeat, with no other
// node left to find it dead and delete the list, would otherwise leave a key without a TTL for ever. Nor
// may that lifetime be shorter than the time until the next heartbeat: a key lifetime (the longer timeout
// + graceMs) can be far shorter than nodeLeaseMs / 3, and the list would expire while the node still runs
// the work it names (a node dying after that would have its processes freed by nobody: the sweeps free a
// dead node's processes from this list; REPAIR_FIND reads it for lost replies).
import { test, type TestContext } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { clusterForTest, waitUntil, type TestNode } from './fixtures/redis-cluster.js';
import { eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';

const IP = '127.0.0.1';
// Heartbeats every 20 s: none comes during the test once the store has started.
const LEASE_MS = 60_000;

test('Redis store: the node\'s list of what it runs has a TTL as soon as Redis makes it: a create, an enter, a spawn, a regenerate', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const engine = new SessionEngine<{ n: number }>({
    clock: new ManualClock(), init: () => ({ n: 0 }), processesPerSession: 2,
    store: createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: 20, nodeLeaseMs: LEASE_MS }),
  });
  // Whatever fails, nothing is left running: the stop would wait for it on a clock that does not move.
  const leases: { release(): void }[] = [];
  let endTask = (): void => {};
  t.after(async () => {
    for (const lease of leases) lease.release();
    endTask();
    await engine.stop();
  });
  const lists = async (): Promise<string[]> => r.redis.keys(`${r.prefix}nb:*`);
  const ttls = async (): Promise<number[]> => Promise.all((await lists()).map((key) => r.redis.pttl(key)));
  const emptied = async (what: string): Promise<void> => assert.ok(await eventually(async () => (await lists()).length === 0, 5_000), `the list emptied after ${what}`);

  // A create: the node's first work.
  const first = await engine.acquire({ sessionId: undefined, ip: IP });
  leases.push(first);
  assert.equal((await lists()).length, 1);
  assert.ok((await ttls()).every((ttl) => ttl > 0), `after a create: ${JSON.stringify(await ttls())}`);
  first.release();
  await emptied('the create\'s release');

  // An enter, the list made again.
  const again = await engine.acquire({ sessionId: first.sessionId, ip: IP });
  leases.push(again);
  assert.ok((await ttls()).every((ttl) => ttl > 0) && (await ttls()).length === 1, `after an enter: ${JSON.stringify(await ttls())}`);

  again.release();
  await emptied('the enter\'s release');

  // A spawn (from the request's process object, kept past its request) while the list is empty.
  const taskEnds = new Promise<void>((resolve) => { endTask = resolve; });
  await new Promise<void>((started) => again.proc.spawn('t', async () => { started(); await taskEnds; }));
  assert.ok((await ttls()).every((ttl) => ttl > 0) && (await ttls()).length === 1, `after a spawn: ${JSON.stringify(await ttls())}`);
  endTask();
  await emptied('the task\'s end');

  // A regenerate on a node that runs nothing else: the rename moves the caller's entry (removed, then added).
  const renaming = await engine.acquire({ sessionId: first.sessionId, ip: IP });
  leases.push(renaming);
  const renamed = await renaming.run(() => engine.regenerate(renaming.sessionId));
  assert.notEqual(renamed, null);
  assert.ok((await ttls()).every((ttl) => ttl > 0) && (await ttls()).length === 1, `after a regenerate: ${JSON.stringify(await ttls())}`);
  renaming.release();
  await emptied('the renamed request\'s release');
});

test('a single node killed (kill -9) before its next heartbeat, with a request running: its list of what it runs still expires', { timeout: 60_000 }, async (t) => {
  const setup = await clusterForTest(t, { nodeLeaseMs: LEASE_MS, pollIntervalMs: 20 });
  if (setup === undefined) return;
  const { cluster } = setup;
  const [a] = (await cluster.start(1)) as [TestNode];
  const holding = a.get('/hold?key=h');
  await a.event((e) => e.event === 'held' && e.key === 'h', 'held');
  a.kill('SIGKILL');
  await a.exited;
  await holding;
  const [list] = await cluster.keys('nb:*');
  assert.ok(list !== undefined, 'the dead node left its list (no other node finds it dead)');
  const ttl = await waitUntil('a TTL read', () => cluster.redis.pttl(list));
  assert.ok(ttl > 0, `the list of a dead node expires (PTTL ${ttl})`);
});

test('Redis store: a fresh list of what a node runs outlives the key lifetime until the next heartbeat (short timeouts, long lease)', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  // Key lifetime: 500 + 1 ms; heartbeats every 20 s of real time: none comes during the test.
  const engine = new SessionEngine<{ n: number }>({
    clock: new ManualClock(), init: () => ({ n: 0 }), inactiveSessionTimeoutMs: 500, inactiveProcessTimeoutMs: 500,
    store: createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: 20, nodeLeaseMs: 60_000, graceMs: 1 }),
  });
  let lease: { release(): void } | undefined;
  try {
    lease = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
    const [list] = await r.redis.keys(`${r.prefix}nb:*`);
    assert.ok(list !== undefined, 'the node lists the request it runs');
    // The request runs on (its node alive, heartbeats due only later) for longer than a key lifetime.
    await delay(1_200);
    assert.equal(await r.redis.scard(list), 1, `the node still lists the request it runs (PTTL ${await r.redis.pttl(list)})`);
  } finally {
    lease?.release();
    await engine.stop();
  }
});
