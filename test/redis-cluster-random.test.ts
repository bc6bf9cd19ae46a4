// Several nodes (child processes, test/fixtures/redis-node.ts) on one Redis, driven by seeded random runs:
// the model's expectations (one hook per closed process, with the vars its last request left; requests of
// one process never overlap) hold over thousands of operations. REDIS_CLUSTER_SEED replays a run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterForTest, type HookRecord, type TestNode } from './fixtures/redis-cluster.js';
import { prng } from './redis-cluster-support.js';

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
    // The last node's stop asks Redis whether other nodes are alive (src/redis/heartbeat.ts); its lease
    // renewed once after the others left shows it is still beating (a bounded poll on its lease key).
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
