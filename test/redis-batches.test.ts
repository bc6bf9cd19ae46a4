// The enters a node makes in one turn of its event loop go to Redis as one script call (src/redis/enters.ts),
// and each is decided as if it had been alone: free processes are taken, a busy one is waited for, a
// dead id gets a new session, a wrong address is refused. The releases of a turn go the same way
// (src/redis/processes.ts): one that fails in Redis fails alone.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { Redis } from 'ioredis';
import { ManualClock, SessionEngine, SessionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { coalesceWritesOf } from '../src/redis/coalesce.js';
import { redisForTest, type RedisForTest } from './redis-support.js';
import { eventually } from './helpers.js';

type Vars = { n: number };
type Spied = Redis & { lwsEnterManyBuffer: (...args: unknown[]) => Promise<unknown> };
const IP = '127.0.0.1';

/** Records the item count of every enter call the client makes from now on. */
function spyEnterCalls(client: Spied): number[] {
  const counts: number[] = [];
  const call = client.lwsEnterManyBuffer.bind(client);
  client.lwsEnterManyBuffer = (...args: unknown[]) => {
    counts.push(Number(args[1]));
    return call(...args);
  };
  return counts;
}

/**
 * A node on the test's Redis with `count` idle sessions, through a client the test can spy on. `batched`:
 * the client is treated as one the store made itself (corked per turn, its enters batched).
 */
async function nodeWithSessions(r: RedisForTest, count: number, batched: boolean, pollIntervalMs?: number): Promise<{ client: Spied; engine: SessionEngine<Vars>; ids: string[] }> {
  const client = await r.client() as Spied;
  if (batched) coalesceWritesOf(client);
  const engine = new SessionEngine<Vars>({
    clock: new ManualClock(), init: () => ({ n: 0 }),
    store: createRedisStore({ redis: client, prefix: r.prefix, ...(pollIntervalMs === undefined ? {} : { pollIntervalMs }) }),
  });
  engine.on('error', () => {});
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    lease.proc.vars.n = 10 + i;
    ids.push(lease.sessionId);
    lease.release();
  }
  // The releases have landed: each session is idle in Redis again, its state saved.
  const idle = async (): Promise<boolean> => (await Promise.all(ids.map((id) => r.redis.zscore(`${r.prefix}idle`, id)))).every((score) => score !== null);
  assert.ok(await eventually(idle, 5_000), 'the releases of the sessions made landed');
  return { client, engine, ids };
}

test('Redis store: the enters of one turn go in one script call, each decided on its own (free, busy, wrong address, dead id)', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const { client, engine, ids } = await nodeWithSessions(r, 5, true, 20);
  try {
    const held = await engine.acquire({ sessionId: ids[4], ip: IP }); // busy while the batch runs
    const calls = spyEnterCalls(client);

    // One turn: three free sessions, the busy one, one with another address, a dead id.
    const free = ids.slice(0, 3).map((sessionId) => engine.acquire({ sessionId, ip: IP }));
    const waiting = engine.acquire({ sessionId: ids[4], ip: IP });
    const wrongIp = engine.acquire({ sessionId: ids[3], ip: '127.0.0.2' }).then(() => undefined, (error: unknown) => error);
    const dead = engine.acquire({ sessionId: 'ffffffff-ffff-4fff-bfff-ffffffffffff', ip: IP });

    const leases = await Promise.all(free);
    assert.equal(calls[0], 6, 'the six enters of the turn went in one call');
    assert.deepEqual(leases.map((lease) => lease.sessionId), ids.slice(0, 3), 'each free session entered');
    assert.deepEqual(leases.map((lease) => lease.proc.vars.n), [10, 11, 12], 'each with its own state');
    const refused = await wrongIp;
    assert.ok(refused instanceof SessionError && refused.code === 'ERR_SESSION_IP_MISMATCH', 'the other address is refused');
    const fresh = await dead;
    assert.ok(!ids.includes(fresh.sessionId), 'the dead id got a new session');
    assert.equal(fresh.proc.vars.n, 0);
    let entered = false;
    void waiting.then(() => { entered = true; });
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.equal(entered, false, 'the busy session\'s request waits');
    held.proc.vars.n = 99;
    held.release();
    const next = await waiting;
    assert.equal(next.sessionId, ids[4]);
    assert.equal(next.proc.vars.n, 99, 'and starts from what the request ahead of it left');
    for (const lease of [...leases, fresh, next]) lease.release();
  } finally {
    await engine.stop();
    client.disconnect();
  }
});

test('Redis store: a failed enter call fails each of its enters with a 503 error, and the next turn\'s enters work', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const { client, engine, ids } = await nodeWithSessions(r, 2, true); // the two enters go in one call
  try {
    const call = client.lwsEnterManyBuffer.bind(client);
    let failNext = true;
    client.lwsEnterManyBuffer = (...args: unknown[]) => {
      if (!failNext) return call(...args);
      failNext = false;
      return Promise.reject(new Error('connection lost'));
    };
    const results = await Promise.allSettled(ids.map((sessionId) => engine.acquire({ sessionId, ip: IP })));
    for (const result of results) {
      assert.equal(result.status, 'rejected');
      assert.ok(result.reason instanceof SessionError && result.reason.code === 'ERR_SESSION_STORE_UNAVAILABLE', 'a 503, not a crash');
    }
    assert.equal(engine.stats().rejected.storeUnavailable, 2);
    const again = await Promise.all(ids.map((sessionId) => engine.acquire({ sessionId, ip: IP })));
    assert.deepEqual(again.map((lease) => lease.sessionId), ids, 'the sessions are intact: the next enters get them');
    for (const lease of again) lease.release();
  } finally {
    await engine.stop();
    client.disconnect();
  }
});

test('Redis store: with a client the application passed in (not corked), each enter leaves at once as its own call', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const { client, engine, ids } = await nodeWithSessions(r, 3, false);
  try {
    const calls = spyEnterCalls(client);
    // Registered before any enter is made, so it runs before a batch sent at the end of this turn would be.
    let turnEnded = false;
    setImmediate(() => { turnEnded = true; });
    const sentWhen: boolean[] = [];
    const spied = client.lwsEnterManyBuffer;
    client.lwsEnterManyBuffer = (...args: unknown[]) => { sentWhen.push(turnEnded); return spied(...args); };
    const leases = await Promise.all(ids.map((sessionId) => engine.acquire({ sessionId, ip: IP })));
    assert.deepEqual(calls, [1, 1, 1], 'one call per enter');
    assert.deepEqual(sentWhen, [false, false, false], 'each sent as it was made, before the turn ended');
    assert.deepEqual(leases.map((lease) => lease.sessionId), ids);
    for (const lease of leases) lease.release();
  } finally {
    await engine.stop();
    client.disconnect();
  }
});

test('Redis store: an enter that raises an error in Redis fails alone: the other enters of its call get their processes', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const { client, engine, ids } = await nodeWithSessions(r, 3, true);
  try {
    // A damaged key: without its last-request time the enter's arithmetic fails in Lua.
    await r.redis.hdel(`${r.prefix}s:${ids[1]}`, 'lr');
    const calls = spyEnterCalls(client);
    const results = await Promise.allSettled(ids.map((sessionId) => engine.acquire({ sessionId, ip: IP })));
    assert.deepEqual(calls, [3], 'the three enters went in one call');
    const [first, damaged, third] = results;
    assert.ok(first?.status === 'fulfilled' && third?.status === 'fulfilled', 'the healthy sessions were entered');
    assert.ok(damaged?.status === 'rejected' && damaged.reason instanceof SessionError && damaged.reason.code === 'ERR_SESSION_STORE_UNAVAILABLE', 'the damaged one is a 503');
    assert.deepEqual([first.value.sessionId, third.value.sessionId], [ids[0], ids[2]]);
    first.value.release();
    third.value.release();
  } finally {
    await engine.stop();
    client.disconnect();
  }
});

test('Redis store: a release that raises an error in Redis fails alone: the other releases of its call land', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const { client, engine, ids } = await nodeWithSessions(r, 2, true);
  const errors: SessionError[] = [];
  engine.on('error', (error) => { errors.push(error); });
  try {
    const [a, b] = await Promise.all(ids.map((sessionId) => engine.acquire({ sessionId, ip: IP })));
    assert.ok(a !== undefined && b !== undefined);
    // A's key damaged while its request runs: not a hash any more, so every command on it fails in Lua.
    await r.redis.del(`${r.prefix}s:${a.sessionId}`);
    await r.redis.set(`${r.prefix}s:${a.sessionId}`, 'not a hash');
    b.proc.vars.n = 42;
    a.release();
    b.release(); // the same turn: one release call
    assert.ok(await eventually(async () => (await r.redis.zscore(`${r.prefix}idle`, b.sessionId)) !== null), 'B\'s release landed: its session is idle');
    assert.ok(await eventually(() => errors.some((error) => error.code === 'ERR_SESSION_STORE_UNAVAILABLE' && error.sessionId === a.sessionId)), 'A\'s failure is reported');
    const again = await engine.acquire({ sessionId: b.sessionId, ip: IP });
    assert.equal(again.proc.vars.n, 42, 'with the state B left');
    again.release();
    await r.redis.del(`${r.prefix}s:${a.sessionId}`); // lets A's retries end ('gone')
  } finally {
    await engine.stop();
    client.disconnect();
  }
});
