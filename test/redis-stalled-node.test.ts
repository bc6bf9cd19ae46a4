// A node that stalls (a real SIGSTOP of a node's process: a long GC or VM pause) past two leases with a
// reply on its way is taken for dead meanwhile: what that reply granted may have gone to another node.
// (1) An enter granted before the stall, read after it: the request must not run (its process may be
// another node's request's by then: they would overlap). (2) A close with a reply on its way (the mark of
// its first hook ran in Redis, unread) must not start the next hook when it wakes: another node has taken
// the close over and run that hook meanwhile. Only a hook running during the stall (or whose mark was lost)
// may run twice (README "Failure modes", docs/redis.md "Liveness and takeover"). The node reads such
// replies while none of its heartbeats has been answered for a lease (src/redis/node-lease.ts).
// test/redis-taken-for-dead.test.ts makes the same stalls in one process, and what the next beat tells.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterForTest, type TestNode } from './fixtures/redis-cluster.js';

const LEASE_MS = 1_000;

test('a claimer that wakes from a stall with a reply read late starts no hook of a close taken over meanwhile', { timeout: 60_000 }, async (t) => {
  const setup = await clusterForTest(t, { nodeLeaseMs: LEASE_MS, sweepIntervalMs: 1_000, pollIntervalMs: 20, processesPerSession: 2 });
  if (setup === undefined) return;
  const { cluster, r } = setup;
  const [a, b] = (await cluster.start(2)) as [TestNode, TestNode];
  const key = (sid: string): string => `${cluster.storePrefix}s:${sid}`;

  // A session with two processes (two requests at once), idle.
  const { sid } = await a.visit('/');
  const one = a.visit('/hold?key=one', sid);
  await a.event((e) => e.event === 'held' && e.key === 'one', 'first request held');
  const two = a.visit('/hold?key=two', sid);
  await a.event((e) => e.event === 'held' && e.key === 'two', 'second request held');
  await a.call('release', { key: 'one' });
  await a.call('release', { key: 'two' });
  await Promise.all([one, two]);
  await cluster.settled(sid);

  // A closes it; as its first hook ends, Redis is kept busy, so the hook's mark runs late and its reply is
  // still unread when A stalls.
  await a.call('stallRedisAfterHook', { ms: 500 });
  void a.call('close', { sid }, 60_000).catch(() => {});
  const first = await a.event((e) => e.event === 'hook-ending', 'A ends its first hook');
  a.child.kill('SIGSTOP');
  try {
    // B finds A dead (its lease runs out, then one more) and takes the close over: the second hook, then the end.
    for (let i = 0; i < 150 && (await r.redis.exists(key(sid))) === 1; i++) {
      await cluster.advanceOn([b], 1_000);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.equal(await r.redis.exists(key(sid)), 0, 'B took the close over and ended it');
  } finally {
    a.child.kill('SIGCONT');
  }
  // A wakes, reads its mark's reply: the close is no longer its own.
  for (let i = 0; i < 10; i++) {
    await cluster.advanceOn([a, b], 1_000);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const starts = (await cluster.hooks()).filter((h) => h.phase === 'start' && h.sessionId === sid);
  const firstPid = first.processId as string;
  const others = starts.filter((h) => h.processId !== firstPid);
  assert.equal(starts.filter((h) => h.processId === firstPid).length, 1, 'the first hook ran once (its mark landed before the takeover)');
  assert.deepEqual(others.map((h) => h.node), ['B'], 'the second hook ran once, on the node that took the close over');
});

const BUSY = `local t0 = redis.call('TIME') local start = t0[1] * 1000000 + t0[2]
while true do local t = redis.call('TIME') if t[1] * 1000000 + t[2] - start >= tonumber(ARGV[1]) * 1000 then break end end
return 1`;

test('a node that wakes from a stall with an enter reply read late does not run the request: the process is another node\'s by then', { timeout: 60_000 }, async (t) => {
  const setup = await clusterForTest(t, { nodeLeaseMs: LEASE_MS, sweepIntervalMs: 1_000, pollIntervalMs: 20 });
  if (setup === undefined) return;
  const { cluster, r } = setup;
  const [a, b] = (await cluster.start(2)) as [TestNode, TestNode];
  const first = await a.visit('/');
  await cluster.settled(first.sid);

  // Redis busy: A's enter waits behind the script, and runs (its process granted) while A is stopped.
  const busy = r.redis.duplicate();
  t.after(() => busy.disconnect());
  void busy.eval(BUSY, 0, 600).catch(() => {});
  await new Promise((resolve) => setTimeout(resolve, 30));
  const late = a.get('/', first.sid, 30_000);
  await new Promise((resolve) => setTimeout(resolve, 150));
  a.child.kill('SIGSTOP');
  let held = false;
  try {
    // B takes A for dead, frees the process, and a request of the session on B holds it.
    const onB = b.get('/hold?key=b', first.sid, 30_000);
    for (let i = 0; i < 150 && !held; i++) {
      await cluster.advanceOn([b], 1_000);
      held = await b.event((e) => e.event === 'held' && e.key === 'b', 'B holds the process', 100).then(() => true, () => false);
    }
    assert.ok(held, 'B runs a request of the session once A is taken for dead');
    void onB;
  } finally {
    a.child.kill('SIGCONT');
  }
  const answer = await late;
  await b.call('release', { key: 'b' });
  assert.notEqual(answer.status, 200, `A ran the request its late reply granted while B ran one in the same process: ${answer.status} ${answer.body}`);
});
