// Several nodes (child processes, test/fixtures/redis-node.ts) on one Redis: the legacy session rules
// hold cluster-wide. Session time is driven by the test on every node at once (ManualClock over IPC);
// requests go to any node. Needs Redis at REDIS_URL (skipped loudly without it, failed under CI=true).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterForTest, waitUntil, type Answer, type TestNode } from './fixtures/redis-cluster.js';
import { advanceUntilClaimed, hooksOf } from './redis-cluster-support.js';

const TIMEOUT_MS = 60_000;

test('the session cap is global: a new session on any node evicts the least recently active idle session of the cluster; all busy → 503 with Retry-After and no cookie', { timeout: 60_000 }, async (t) => {
  const setup = await clusterForTest(t, { maxSessions: 3, pollIntervalMs: 20 });
  if (setup === undefined) return;
  const { cluster } = setup;
  const [a, b, c] = (await cluster.start(3)) as [TestNode, TestNode, TestNode];

  const s1 = await a.visit('/');
  await cluster.settled(s1.sid);
  const s2 = await b.visit('/');
  await cluster.settled(s2.sid);
  const s3 = await c.visit('/');
  await cluster.settled(s3.sid);
  // s1 becomes the most recently active, on another node than the one that created it.
  assert.equal((await b.visit('/', s1.sid)).n, 2);
  await cluster.settled(s1.sid);

  const s4 = await c.visit('/');
  await cluster.settled(s4.sid);
  const [evicted2] = await cluster.doneHooks(1);
  assert.equal(evicted2?.sessionId, s2.sid, 'the least recently active idle session goes first, whichever node created it');
  assert.equal(evicted2.reason, 'evicted');
  assert.deepEqual(evicted2.vars, { n: 1 });

  const s5 = await a.visit('/');
  await cluster.settled(s5.sid);
  const evicted = await cluster.doneHooks(2);
  assert.equal(evicted[1]?.sessionId, s3.sid);
  assert.deepEqual([await cluster.isOpen(s1.sid), await cluster.isOpen(s4.sid), await cluster.isOpen(s5.sid)], [true, true, true]);

  // Every session busy, each on another node: no node may create one.
  const holds = [a.get('/hold?key=h1', s1.sid), b.get('/hold?key=h4', s4.sid), c.get('/hold?key=h5', s5.sid)];
  await Promise.all([a.event((e) => e.event === 'held' && e.key === 'h1', 'held h1'), b.event((e) => e.event === 'held' && e.key === 'h4', 'held h4'), c.event((e) => e.event === 'held' && e.key === 'h5', 'held h5')]);
  for (const node of [a, b, c]) {
    const refused = await node.get('/');
    assert.equal(refused.status, 503, `${node.name}: all busy`);
    assert.equal(refused.headers['retry-after'], '1');
    assert.equal(refused.setCookie, undefined, 'no cookie with a 503');
    const returning = await node.get('/', s2.sid);
    assert.equal(returning.status, 503, `${node.name}: an evicted id needs a new session too`);
  }
  assert.deepEqual((await cluster.hooks()).filter((h) => h.phase === 'done').length, 2, 'nothing evicted while all are busy');

  // One goes idle: it is the one evicted next.
  await a.call('release', { key: 'h1' });
  const h1 = await holds[0]!;
  assert.equal(h1.status, 200);
  assert.equal(h1.json<{ n: number }>().n, 4);
  await cluster.settled(s1.sid);
  const s6 = await c.visit('/');
  const third = (await cluster.doneHooks(3))[2]!;
  assert.equal(third.sessionId, s1.sid);
  assert.deepEqual(third.vars, { n: 4, tag: 'h1' }, 'the hook sees the vars the held request left');

  await b.call('release', { key: 'h4' });
  await c.call('release', { key: 'h5' });
  assert.deepEqual((await Promise.all(holds.slice(1))).map((h) => h.status), [200, 200]);
  await cluster.settled(s6.sid);
  const hooks = await cluster.hooks();
  for (const sid of [s2.sid, s3.sid, s1.sid]) {
    const { start, done } = hooksOf(hooks, sid);
    assert.equal(start.length, 1, `one hook for ${sid}`);
    assert.equal(done.length, 1);
  }
  assert.equal(hooks.length, 6);
});

test('closeSession on node B while the session runs a request on node A: A\'s request is asked to stop, its response clears the cookie, the hook runs once afterwards with the vars it left; the old id gets a new session on any node', { timeout: 60_000 }, async (t) => {
  const setup = await clusterForTest(t, { pollIntervalMs: 20 });
  if (setup === undefined) return;
  const { cluster } = setup;
  const [a, b, c] = (await cluster.start(3)) as [TestNode, TestNode, TestNode];

  const { sid } = await a.visit('/');
  await cluster.settled(sid);
  const held = a.get('/hold?key=x', sid);
  await a.event((e) => e.event === 'held' && e.key === 'x', 'held x');

  const closing = b.call<boolean>('close', { sid });
  await a.event((e) => e.event === 'aborted' && e.key === 'x', 'the held request\'s signal aborted on A');
  assert.equal(hooksOf(await cluster.hooks(), sid).start.length, 0, 'the hook waits for the running request');
  // The id is dead cluster-wide already: C gives a newcomer with it a new session.
  const meanwhile = await c.visit('/', sid);
  assert.notEqual(meanwhile.sid, sid);
  assert.equal(meanwhile.n, 1);

  await a.call('release', { key: 'x' });
  const answer = await held;
  assert.equal(answer.status, 200);
  assert.match(answer.setCookie ?? '', /^4DSID=; Max-Age=0; /, 'the response of the closing session clears the cookie');
  assert.deepEqual(answer.json<{ n: number; tag: string; aborted: boolean }>(), { sid, pid: answer.json<{ pid: string }>().pid, n: 3, node: 'A', tag: 'x', aborted: true });
  assert.equal(await closing, true);

  const { start, done } = hooksOf(await cluster.hooks(), sid);
  assert.equal(start.length, 1, 'the hook ran once');
  assert.equal(done.length, 1);
  assert.deepEqual({ reason: done[0]!.reason, vars: done[0]!.vars, node: done[0]!.node }, { reason: 'closed', vars: { n: 3, tag: 'x' }, node: 'B' });

  for (const node of [a, b, c]) {
    const fresh = await node.get('/', sid);
    assert.equal(fresh.status, 200);
    assert.ok(fresh.cookieId !== undefined && fresh.cookieId !== sid, `${node.name}: the old id gets a new session`);
    assert.equal(fresh.json<{ n: number }>().n, 1, 'with a fresh context');
  }
  assert.equal(await c.call('close', { sid }), false, 'a closed id is unknown');
});

test('a timeout is claimed by exactly one node: each timed-out process is hooked once, sessions active within the timeout stay', { timeout: 60_000 }, async (t) => {
  const setup = await clusterForTest(t, { inactiveProcessTimeoutMs: TIMEOUT_MS, sweepIntervalMs: 1_000, pollIntervalMs: 20 });
  if (setup === undefined) return;
  const { cluster } = setup;
  const nodes = await cluster.start(3);
  const at = (i: number): TestNode => nodes[i % nodes.length]!;

  const old: { sid: string; n: number }[] = [];
  for (let i = 0; i < 9; i++) {
    let visit = await at(i).visit('/');
    for (let k = 0; k < i % 3; k++) visit = await at(i + k + 1).visit('/', visit.sid);
    await cluster.settled(visit.sid);
    old.push({ sid: visit.sid, n: visit.n });
  }
  await cluster.advance(TIMEOUT_MS / 2);
  const fresh: { sid: string; n: number }[] = [];
  for (let i = 0; i < 3; i++) {
    const visit = await at(i).visit('/');
    await cluster.settled(visit.sid);
    fresh.push({ sid: visit.sid, n: visit.n });
  }
  assert.equal((await cluster.hooks()).length, 0);

  await advanceUntilClaimed(cluster, TIMEOUT_MS / 2, old.map((s) => s.sid));
  const done = await cluster.doneHooks(old.length);
  const hooks = await cluster.hooks();
  for (const { sid, n } of old) {
    const { start, done: finished } = hooksOf(hooks, sid);
    assert.equal(start.length, 1, `${sid} hooked once`);
    assert.equal(finished.length, 1);
    assert.equal(finished[0]!.reason, 'timeout');
    assert.deepEqual(finished[0]!.vars, { n });
  }
  assert.equal(done.length, old.length, 'no session active within the timeout was closed');
  for (const [i, { sid, n }] of fresh.entries()) {
    const visit = await at(i + 1).visit('/', sid);
    assert.deepEqual([visit.sid, visit.n], [sid, n + 1], 'a fresh session keeps its context on another node');
  }
  t.diagnostic(`timeouts hooked by node: ${JSON.stringify(Object.fromEntries(['A', 'B', 'C'].map((name) => [name, done.filter((h) => h.node === name).length])))}`);
});

test('record locks are cluster-wide: lockedBy names the holder on every node, another session is refused, and the close of the holder (from a third node) frees the record everywhere', { timeout: 60_000 }, async (t) => {
  const setup = await clusterForTest(t, { pollIntervalMs: 20 });
  if (setup === undefined) return;
  const { cluster } = setup;
  const [a, b, c] = (await cluster.start(3)) as [TestNode, TestNode, TestNode];

  const holder = await a.visit('/lock?table=Stock&key=1');
  assert.equal(holder.locked, true);
  await cluster.settled(holder.sid);
  for (const node of [a, b, c]) {
    const owner = await node.call<{ sessionId: string; processId: string } | null>('lockedBy', { table: 'Stock', key: '1' });
    assert.deepEqual([owner?.sessionId, owner?.processId], [holder.sid, holder.pid], `${node.name} sees the holder`);
  }
  const other = await b.visit('/lock?table=Stock&key=1');
  assert.equal(other.locked, false, 'another session does not get the record');
  await cluster.settled(other.sid);
  const seen = await c.visit('/lockedBy?table=Stock&key=1', other.sid);
  assert.equal((seen.owner as { processId: string } | null)?.processId, holder.pid);
  await cluster.settled(other.sid);

  assert.equal(await c.call('close', { sid: holder.sid }), true);
  for (const node of [a, b, c]) assert.equal(await node.call('lockedBy', { table: 'Stock', key: '1' }), null, `${node.name}: freed`);
  const retry = await a.visit('/lock?table=Stock&key=1', other.sid);
  assert.deepEqual([retry.sid, retry.locked], [other.sid, true]);
});

test('regenerate on one node: the new id carries the context, locks included, on every node; the old id is dead everywhere', { timeout: 60_000 }, async (t) => {
  const setup = await clusterForTest(t, { pollIntervalMs: 20 });
  if (setup === undefined) return;
  const { cluster } = setup;
  const [a, b, c] = (await cluster.start(3)) as [TestNode, TestNode, TestNode];

  const first = await a.visit('/lock?table=Stock&key=7');
  assert.equal(first.locked, true);
  await cluster.settled(first.sid);
  const answer = await b.get('/regenerate', first.sid);
  assert.equal(answer.status, 200);
  const moved = answer.json<{ old: string; renamed: string; sid: string; pid: string; n: number }>();
  assert.equal(moved.old, first.sid);
  assert.ok(moved.renamed !== first.sid && moved.renamed.length > 0);
  assert.equal(answer.cookieId, moved.renamed, 'the response sends the new id');
  assert.deepEqual([moved.sid, moved.pid, moved.n], [moved.renamed, first.pid, 1]);
  await cluster.settled(moved.renamed);

  const stale = await c.visit('/', first.sid);
  assert.ok(stale.sid !== first.sid && stale.sid !== moved.renamed, 'the old id gets a new session');
  assert.equal(stale.n, 1);
  await cluster.settled(stale.sid);
  const again = await a.visit('/', moved.renamed);
  assert.deepEqual([again.sid, again.pid, again.n], [moved.renamed, first.pid, 2], 'the new id has the context on another node');
  await cluster.settled(moved.renamed);
  const owner = await c.call<{ sessionId: string; processId: string } | null>('lockedBy', { table: 'Stock', key: '7' });
  assert.deepEqual([owner?.sessionId, owner?.processId], [moved.renamed, first.pid], 'the lock moved with the session');

  assert.equal(await c.call('close', { sid: moved.renamed }), true);
  const hooks = hooksOf(await cluster.hooks(), moved.renamed);
  assert.deepEqual(hooks.done.map((h) => [h.processId, h.vars.n]), [[first.pid, 2]]);
  assert.equal(hooks.start.length, 1);
  assert.equal(await b.call('lockedBy', { table: 'Stock', key: '7' }), null);
});

test('setOption on one node applies on every node, and on a node that joins later', { timeout: 60_000 }, async (t) => {
  const setup = await clusterForTest(t, { pollIntervalMs: 20, sweepIntervalMs: 1_000 });
  if (setup === undefined) return;
  const { cluster } = setup;
  const [a, b, c] = (await cluster.start(3)) as [TestNode, TestNode, TestNode];

  await a.call('setOption', { name: 'inactiveProcessTimeoutMs', value: 120_000 });
  await b.call('setOption', { name: 'maxSessions', value: 2 });
  for (const node of [a, b, c]) {
    await waitUntil(`${node.name} sees the options`, async () =>
      (await node.call('getOption', { name: 'inactiveProcessTimeoutMs' })) === 120_000 && (await node.call('getOption', { name: 'maxSessions' })) === 2);
  }
  // A node joining later reads them once its store has started (before its first request is served).
  const [d] = (await cluster.start(1)) as [TestNode];
  await waitUntil('D reads the options set before it joined', async () =>
    (await d.call('getOption', { name: 'inactiveProcessTimeoutMs' })) === 120_000 && (await d.call('getOption', { name: 'maxSessions' })) === 2, 5_000);

  // The cap set on B holds on A, C and D.
  const s1 = await a.visit('/');
  await cluster.settled(s1.sid);
  const s2 = await c.visit('/');
  await cluster.settled(s2.sid);
  const s3 = await d.visit('/');
  await cluster.settled(s3.sid);
  const [first] = await cluster.doneHooks(1);
  assert.deepEqual([first?.sessionId, first?.reason], [s1.sid, 'evicted']);

  // The timeout set on A is the one every node's sweep uses.
  await advanceUntilClaimed(cluster, 120_000, [s2.sid, s3.sid]);
  const hooks = await cluster.doneHooks(3);
  assert.deepEqual(hooks.slice(1).map((h) => h.reason), ['timeout', 'timeout']);
});

test('maxQueuedRequests bounds the requests waiting for a busy session, however they arrive: one after another on one node, or on several nodes; the others get 503 at once', {
  timeout: 60_000,
}, async (t) => {
  const setup = await clusterForTest(t, { pollIntervalMs: 20 });
  if (setup === undefined) return;
  const { cluster } = setup;
  const [a, b, c] = (await cluster.start(3)) as [TestNode, TestNode, TestNode];
  await a.call('setOption', { name: 'maxQueuedRequests', value: 2 });
  for (const node of [b, c]) await waitUntil(`${node.name} sees the bound`, async () => (await node.call('getOption', { name: 'maxQueuedRequests' })) === 2);
  const s = await a.visit('/');
  await cluster.settled(s.sid);
  const hold = a.get('/hold?key=h', s.sid);
  await a.event((e) => e.event === 'held' && e.key === 'h', 'held h');

  // One request at a time: each is queued (counted on its node) or answered before the next is sent.
  const sent: { node: TestNode; answer: Promise<Answer>; answered: boolean }[] = [];
  for (const node of [b, b, b, c, c]) {
    const entry = { node, answer: node.get('/', s.sid, 10_000), answered: false };
    void entry.answer.then(() => { entry.answered = true; });
    const before = sent.filter((e) => e.node === node && !e.answered).length;
    sent.push(entry);
    await waitUntil(`request ${sent.length} queued or answered`, async () => entry.answered || (await node.call<{ queuedRequests: number }>('stats')).queuedRequests === before + 1);
  }
  const early = sent.map((e) => e.answered);
  await a.call('release', { key: 'h' });
  assert.equal((await hold).status, 200);
  const statuses = await Promise.all(sent.map(async (e) => (await e.answer).status));
  assert.deepEqual(statuses, [200, 200, 503, 503, 503], 'two wait (the bound), the others are refused');
  assert.deepEqual(early, [false, false, true, true, true], 'the refused ones at once, not after the wait');
});
