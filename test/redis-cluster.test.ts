// Several nodes (child processes, test/fixtures/redis-node.ts) on one Redis: the legacy session rules
// hold cluster-wide. Session time is driven by the test on every node at once (ManualClock over IPC);
// requests go to any node. Needs Redis at REDIS_URL (skipped loudly without it, failed under CI=true).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster, clusterForTest, waitUntil, type Answer, type HookRecord, type TestNode, type Visit } from './fixtures/redis-cluster.js';

const TIMEOUT_MS = 60_000;

/** The hook records of one session, by phase. */
function hooksOf(hooks: HookRecord[], sid: string): { start: HookRecord[]; done: HookRecord[] } {
  const mine = hooks.filter((h) => h.sessionId === sid);
  return { start: mine.filter((h) => h.phase === 'start'), done: mine.filter((h) => h.phase === 'done') };
}

/**
 * Moves session time by `ms`, then until none of `due` is open any more: each node sweeps once per
 * sweep interval of session time, so a sweep that ran before a release landed gets another turn.
 */
async function advanceUntilClaimed(cluster: Cluster, ms: number, due: string[], sweepIntervalMs = 1_000, timeoutMs = 10_000): Promise<void> {
  await cluster.advance(ms);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = (await Promise.all(due.map((sid) => cluster.isOpen(sid)))).filter(Boolean).length;
    if (open === 0) return;
    if (Date.now() > deadline) throw new Error(`${open} of ${due.length} due session(s) still open ${timeoutMs} ms after the deadline`);
    await new Promise((resolve) => setTimeout(resolve, 20));
    await cluster.advance(sweepIntervalMs);
  }
}

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

/** A small seeded PRNG (mulberry32): the same seed replays the same run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let r = Math.imul(a ^ (a >>> 15), 1 | a);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}

const RUN_OPS = Number(process.env.REDIS_CLUSTER_OPS ?? 2_000);
const RUN_SEED = process.env.REDIS_CLUSTER_SEED === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(process.env.REDIS_CLUSTER_SEED);

test(`a seeded random run of ${RUN_OPS} operations on 3 nodes (new sessions at the cap, returning clients, closes from any node, logouts, time passing) and a stop of every node: one hook per closed process, each with the vars the model says the last request left`, { timeout: 110_000 }, async (t) => {
  const CAP = 8;
  const T = 300_000;
  const SWEEP = 1_000;
  const setup = await clusterForTest(t, { maxSessions: CAP, inactiveProcessTimeoutMs: T, sweepIntervalMs: SWEEP, pollIntervalMs: 20, nodeLeaseMs: 1_500 });
  if (setup === undefined) return;
  const { cluster } = setup;
  const nodes = await cluster.start(3);
  const random = prng(RUN_SEED);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
  t.diagnostic(`seed ${RUN_SEED} (REDIS_CLUSTER_SEED=${RUN_SEED} replays this run)`);

  // The model: open sessions (all idle between operations), and what each closed process's hook must see.
  interface Model { sid: string; pid: string; n: number; lru: number; lastActivityMs: number }
  const open = new Map<string, Model>();
  const expected = new Map<string, { sid: string; n: number; reason: string }>();
  const known: string[] = [];
  const clients: { sid: string | undefined }[] = [];
  let lru = 0;
  let op = 0;
  let step = '';
  const counts: Record<string, number> = {};

  const closeModel = (sid: string, reason: string): void => {
    const session = open.get(sid)!;
    open.delete(sid);
    expected.set(session.pid, { sid, n: session.n, reason });
    counts[reason] = (counts[reason] ?? 0) + 1;
  };
  const created = (sid: string, pid: string, n: number): void => {
    if (open.size >= CAP) closeModel([...open.values()].reduce((a, b) => (a.lru < b.lru ? a : b)).sid, 'evicted');
    open.set(sid, { sid, pid, n, lru: ++lru, lastActivityMs: cluster.nowMs });
    known.push(sid);
  };

  async function visit(client: { sid: string | undefined }, node: TestNode): Promise<void> {
    step = `visit ${client.sid ?? '(no cookie)'} on ${node.name}`;
    const answer = await node.get('/', client.sid);
    assert.equal(answer.status, 200, `${answer.body} ${answer.error ?? ''}`);
    const got = answer.json<{ sid: string; pid: string; n: number }>();
    assert.equal(answer.cookieId, got.sid, 'the cookie names the session that ran');
    const session = client.sid === undefined ? undefined : open.get(client.sid);
    if (session !== undefined) {
      assert.deepEqual([got.sid, got.pid, got.n], [session.sid, session.pid, session.n + 1], 'a live session keeps its process and vars');
      session.n++;
      session.lru = ++lru;
      session.lastActivityMs = cluster.nowMs;
    } else {
      assert.ok(got.sid !== client.sid, 'a dead id gets a new session');
      assert.equal(got.n, 1);
      created(got.sid, got.pid, 1);
    }
    client.sid = got.sid;
    await cluster.settled(got.sid);
  }

  async function logout(client: { sid: string | undefined }, node: TestNode): Promise<void> {
    step = `logout ${client.sid ?? '(no cookie)'} on ${node.name}`;
    const answer = await node.get('/logout', client.sid);
    assert.equal(answer.status, 200, `${answer.body} ${answer.error ?? ''}`);
    const got = answer.json<{ closed: boolean; sid: string; pid: string; n: number; after: Record<string, unknown> }>();
    assert.equal(got.closed, true);
    assert.deepEqual(got.after, {}, 'the request goes on with a reset context');
    assert.match(answer.setCookie ?? '', /^4DSID=; Max-Age=0; /);
    const session = client.sid === undefined ? undefined : open.get(client.sid);
    if (session !== undefined) {
      assert.equal(got.sid, session.sid);
      session.n++;
    } else {
      created(got.sid, got.pid, 1);
    }
    assert.equal(got.n, open.get(got.sid)!.n);
    closeModel(got.sid, 'closed');
    client.sid = undefined;
  }

  async function close(node: TestNode): Promise<void> {
    const live = [...open.keys()];
    const sid = live.length > 0 && random() < 0.75 ? pick(live) : known.length > 0 ? pick(known) : 'no-such-session';
    step = `close ${sid} from ${node.name}`;
    const wasOpen = open.has(sid);
    const closed = await node.call<boolean>('close', { sid });
    if (wasOpen) {
      assert.equal(closed, true);
      closeModel(sid, 'closed');
    }
  }

  async function advance(ms: number): Promise<void> {
    step = `advance ${ms} ms`;
    await cluster.advance(ms);
    const due: string[] = [];
    const deadline = Date.now() + 10_000;
    for (;;) {
      for (const session of [...open.values()]) {
        if (session.lastActivityMs + T <= cluster.nowMs) {
          closeModel(session.sid, 'timeout');
          due.push(session.sid);
        }
      }
      if ((await Promise.all(due.map((sid) => cluster.isOpen(sid)))).every((isOpen) => !isOpen)) return;
      assert.ok(Date.now() < deadline, 'due sessions claimed within 10 s');
      await new Promise((resolve) => setTimeout(resolve, 10));
      await cluster.advance(SWEEP);
    }
  }

  try {
    for (op = 0; op < RUN_OPS; op++) {
      const node = nodes[op % nodes.length]!;
      const dice = random();
      if (dice < 0.18 || clients.length === 0) {
        const client = { sid: undefined };
        if (clients.length < 30) clients.push(client);
        else clients[Math.floor(random() * clients.length)] = client;
        await visit(client, node);
      } else if (dice < 0.62) {
        await visit(pick(clients), node);
      } else if (dice < 0.69) {
        await close(pick(nodes));
      } else if (dice < 0.75) {
        await logout(pick(clients), node);
      } else if (dice < 0.97) {
        await advance(1_000 + Math.floor(random() * 90_000));
      } else {
        await advance(T + Math.floor(random() * 60_000));
      }
    }
    // The cluster stops: two nodes leave (sessions kept), the last one closes the rest with 'shutdown'.
    step = 'stop';
    const last = nodes[2]!;
    await nodes[0]!.stop();
    await nodes[1]!.stop();
    // stop() decides from the last heartbeat whether other nodes are alive: wait until the last node's
    // lease was renewed once after the others left (a bounded poll on its lease key).
    const leaseKeys = await cluster.keys('node:*');
    assert.equal(leaseKeys.length, 1, 'one node left alive');
    await cluster.renewed(leaseKeys);
    await last.stop();
    for (const sid of [...open.keys()]) closeModel(sid, 'shutdown');

    const hooks = await cluster.hooks();
    const byPid = new Map<string, HookRecord[]>();
    for (const hook of hooks) byPid.set(hook.processId, [...(byPid.get(hook.processId) ?? []), hook]);
    const problems: string[] = [];
    for (const [pid, want] of expected) {
      const got = byPid.get(pid) ?? [];
      const starts = got.filter((h) => h.phase === 'start');
      const done = got.filter((h) => h.phase === 'done');
      if (starts.length !== 1 || done.length !== 1) problems.push(`${pid} (${want.sid}, ${want.reason}): ${starts.length} start(s), ${done.length} done`);
      else if (done[0]!.sessionId !== want.sid || done[0]!.reason !== want.reason || done[0]!.vars.n !== want.n) {
        problems.push(`${pid}: hook saw ${JSON.stringify({ sid: done[0]!.sessionId, reason: done[0]!.reason, n: done[0]!.vars.n })}, model says ${JSON.stringify(want)}`);
      }
    }
    for (const pid of byPid.keys()) if (!expected.has(pid)) problems.push(`${pid}: hooked, but the model closed no such process`);
    assert.deepEqual(problems, [], `hooks vs the model (${expected.size} closed processes)`);
    t.diagnostic(`${RUN_OPS} operations, ${known.length} sessions, closes: ${JSON.stringify(counts)}`);
  } catch (error) {
    const stderr = nodes.map((n) => n.stderr).join('').slice(-2_000);
    throw new Error(`seed ${RUN_SEED} (REDIS_CLUSTER_SEED=${RUN_SEED} replays), operation #${op}: ${step}: ${(error as Error).message}\n${stderr}`, { cause: error });
  }
});

// onStop 'auto' closes the sessions when the stopping node is the last one alive. Both tests use a long
// lease (heartbeats 20 s apart), so "alive" must be decided at stop time, not from the last heartbeat.

test('onStop auto: a node that stops while another node is alive keeps every session (a rolling restart), even when it has not heard of that node yet', {
  timeout: 60_000,
}, async (t) => {
  const setup = await clusterForTest(t, { nodeLeaseMs: 60_000, pollIntervalMs: 20 });
  if (setup === undefined) return;
  const { cluster } = setup;
  const [a] = (await cluster.start(1)) as [TestNode];
  const [b] = (await cluster.start(1)) as [TestNode];
  const sessions = [await a.visit('/'), await b.visit('/'), await a.visit('/')];
  for (const s of sessions) await cluster.settled(s.sid);

  await a.stop();
  assert.deepEqual(await cluster.hooks(), [], 'no session closed: B is alive');
  for (const s of sessions) {
    const visit = await b.visit('/', s.sid);
    assert.deepEqual([visit.sid, visit.n], [s.sid, s.n + 1], 'B serves the session with its vars');
  }
});

test('onStop auto: the last node to stop closes every session with \'shutdown\', even right after the others stopped', {
  timeout: 60_000,
}, async (t) => {
  const setup = await clusterForTest(t, { nodeLeaseMs: 60_000, pollIntervalMs: 20 });
  if (setup === undefined) return;
  const { cluster } = setup;
  // A beats often (it knows B is alive when it stops); B beats every 20 s.
  const [a] = (await cluster.start(1, { nodeLeaseMs: 600 })) as [TestNode];
  const leaseOfA = await cluster.keys('node:*');
  const [b] = (await cluster.start(1)) as [TestNode];
  const sessions = [await a.visit('/'), await b.visit('/'), await b.visit('/')];
  for (const s of sessions) await cluster.settled(s.sid);
  await cluster.renewed(leaseOfA); // A has beaten since B joined

  await a.stop();
  assert.deepEqual(await cluster.hooks(), [], 'A keeps the sessions: B is alive');
  await b.stop();
  const hooks = await cluster.hooks();
  for (const s of sessions) {
    const { start, done } = hooksOf(hooks, s.sid);
    assert.deepEqual([start.length, done.length, done[0]?.reason, done[0]?.vars.n], [1, 1, 'shutdown', s.n], `${s.sid} closed once by the last node`);
  }
});

const CONCURRENT_CLIENTS = 8;
const CONCURRENT_OPS = Number(process.env.REDIS_CLUSTER_CONCURRENT_OPS ?? 250);

test(`${CONCURRENT_CLIENTS} clients at once, ${CONCURRENT_OPS} operations each, on 3 nodes while session time runs (seeded): only 200 or 503; requests of one process never overlap (its n goes 1, 2, 3… without a repeat or a gap); every process is hooked exactly once, with the vars its last request left`, { timeout: 110_000 }, async (t) => {
  const setup = await clusterForTest(t, { maxSessions: 7, inactiveProcessTimeoutMs: 120_000, sweepIntervalMs: 1_000, pollIntervalMs: 20, nodeLeaseMs: 1_500, closeTimeoutMs: 20 * 24 * 3_600_000 });
  if (setup === undefined) return;
  const { cluster } = setup;
  const nodes = await cluster.start(3);
  const seed = RUN_SEED;
  t.diagnostic(`seed ${seed} (REDIS_CLUSTER_SEED=${seed}; the interleaving differs from run to run)`);

  const seen = new Map<string, { sid: string; ns: number[] }>();
  const known: string[] = [];
  const statuses: Record<string, number> = {};
  const record = (pid: string, sid: string, n: number): void => {
    const entry = seen.get(pid) ?? { sid, ns: [] };
    assert.equal(entry.sid, sid, `${pid} belongs to one session`);
    entry.ns.push(n);
    seen.set(pid, entry);
    if (entry.ns.length === 1) known.push(sid);
  };

  let running = true;
  const ticker = (async () => {
    const random = prng(seed ^ 0x5eed);
    while (running) {
      await cluster.advance(random() < 0.1 ? 150_000 : Math.floor(random() * 30_000));
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();

  const client = async (index: number): Promise<void> => {
    const random = prng(seed + index);
    const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
    let cookie: string | undefined;
    for (let op = 0; op < CONCURRENT_OPS; op++) {
      const node = pick(nodes);
      const dice = random();
      if (dice < 0.1 && known.length > 0) {
        await pick(nodes).call('close', { sid: pick(known) }, 30_000);
        continue;
      }
      if (dice < 0.2) cookie = undefined;
      // Some requests carry another client's cookie: two clients in one session queue for its process.
      const sid = dice > 0.9 && known.length > 0 ? pick(known) : cookie;
      const logout = dice >= 0.8 && dice < 0.9;
      const answer = await node.get(logout ? '/logout' : '/', sid, 30_000);
      const status = String(answer.status);
      statuses[status] = (statuses[status] ?? 0) + 1;
      if (answer.status === 503) continue;
      assert.equal(answer.status, 200, `${node.name}: ${answer.status} ${answer.body} ${answer.error ?? ''}`);
      const got = answer.json<{ sid: string; pid: string; n: number; closed?: boolean }>();
      record(got.pid, got.sid, got.n);
      if (logout) {
        assert.equal(got.closed, true);
        assert.match(answer.setCookie ?? '', /^4DSID=; Max-Age=0; /);
        cookie = undefined;
      } else if (sid === cookie) {
        cookie = answer.cookieId === '' ? undefined : got.sid;
      }
    }
  };

  try {
    await Promise.all(Array.from({ length: CONCURRENT_CLIENTS }, (_, i) => client(i)));
  } finally {
    running = false;
    await ticker;
  }
  await nodes[0]!.stop();
  await nodes[1]!.stop();
  await cluster.renewed(await cluster.keys('node:*'));
  await nodes[2]!.stop();

  const hooks = await cluster.hooks();
  const problems: string[] = [];
  for (const [pid, { sid, ns }] of seen) {
    const sorted = [...ns].sort((x, y) => x - y);
    if (sorted.some((n, i) => n !== i + 1)) problems.push(`${pid} (${sid}): requests saw n = ${sorted.join(',')}`);
    const mine = hooks.filter((h) => h.processId === pid);
    const done = mine.filter((h) => h.phase === 'done');
    if (mine.length !== 2 || done.length !== 1) problems.push(`${pid} (${sid}): ${mine.length} hook record(s) ${JSON.stringify(mine.map((h) => [h.phase, h.node, h.reason]))}`);
    else if (done[0]!.vars.n !== sorted.at(-1) || done[0]!.sessionId !== sid) problems.push(`${pid} (${sid}): the hook saw n=${done[0]!.vars.n}, its last request left n=${String(sorted.at(-1))}`);
  }
  for (const hook of hooks) if (!seen.has(hook.processId)) problems.push(`${hook.processId}: hooked, never seen by a request`);
  t.diagnostic(`answers: ${JSON.stringify(statuses)}; processes: ${seen.size}; closes: ${JSON.stringify(hooks.filter((h) => h.phase === 'done').reduce<Record<string, number>>((acc, h) => ({ ...acc, [h.reason]: (acc[h.reason] ?? 0) + 1 }), {}))}`);
  assert.deepEqual(problems.slice(0, 20), [], `seed ${seed}: ${problems.length} problem(s)`);
});

test('a node whose closeTimeoutMs is longer than 2^31 ms (24.8 days; up to 366 days is valid) starts its store: it registers, heartbeats and sweeps before any request', {
  timeout: 30_000,
}, async (t) => {
  const setup = await clusterForTest(t, { closeTimeoutMs: 30 * 24 * 3_600_000 });
  if (setup === undefined) return;
  const { cluster } = setup;
  try {
    await cluster.start(1, {}, 3_000);
  } catch (error) {
    assert.fail(`${(error as Error).message}; the node's stderr: ${cluster.nodes[0]?.stderr.trim()}`);
  }
});

test('onStop auto: every node stopped at the same moment (a whole deployment going down): each session is closed once with \'shutdown\'', {
  timeout: 60_000,
}, async (t) => {
  const setup = await clusterForTest(t, { nodeLeaseMs: 600, pollIntervalMs: 20 });
  if (setup === undefined) return;
  const { cluster } = setup;
  const nodes = await cluster.start(3);
  const sessions: Visit[] = [];
  for (let i = 0; i < 6; i++) {
    const v = await nodes[i % 3]!.visit('/');
    await cluster.settled(v.sid);
    sessions.push(v);
  }
  // Every node has heard of every other one.
  await cluster.renewed(await cluster.keys('node:*'));

  await Promise.all(nodes.map((node) => node.stop()));
  const hooks = await cluster.hooks();
  const missing = sessions.filter((s) => hooksOf(hooks, s.sid).done.length !== 1);
  assert.deepEqual(missing.map((s) => s.sid), [], `every session closed once (${hooks.filter((h) => h.phase === 'done').length} hook(s) for ${sessions.length} sessions)`);
  assert.ok(hooks.every((h) => h.reason === 'shutdown'));
  assert.equal(hooks.length, sessions.length * 2, 'no hook twice');
});
