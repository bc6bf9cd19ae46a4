// Every key the Redis store writes expires when the cluster is gone: the idle sets a release makes have a
// TTL at once (not only from the next sweep or heartbeat), and the options set at run time live as the
// shared keys do and go with the last node's stop (4D's WEB SET OPTION does not outlive the web server):
// a cluster started afresh on the prefix runs with its own options. An option reset to none (cookieDomain)
// reaches every node, those that join later too.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type SessionEngineOptions, type SessionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { eventually } from './helpers.js';
import { redisForTest, type RedisForTest } from './redis-support.js';

const IP = '127.0.0.1';
const LEASE_MS = 60_000; // no heartbeat nor sweep runs again within a test
const SLOW = { nodeLeaseMs: LEASE_MS, sweepIntervalMs: LEASE_MS, pollIntervalMs: 20 };

function nodeOn(r: RedisForTest, errors: SessionError[], options: SessionEngineOptions = {}, graceMs?: number): SessionEngine {
  const engine = new SessionEngine({ clock: new ManualClock(), ...options, store: createRedisStore({ url: r.url, prefix: r.prefix, ...SLOW, ...(graceMs === undefined ? {} : { graceMs }) }) });
  engine.on('error', (error) => errors.push(error));
  return engine;
}

/** Serves one request: the node has started (joined the cluster, read its options). */
async function visit(engine: SessionEngine): Promise<string> {
  const lease = await engine.acquire({ sessionId: undefined, ip: IP });
  lease.release();
  return lease.sessionId;
}

test('Redis store: the idle sets a release makes expire from the start, before any sweep or heartbeat touches them, also when they are made again after emptying', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const errors: SessionError[] = [];
  const engine = nodeOn(r, errors);
  const idleWithTtl = async (what: string): Promise<void> => {
    assert.ok(await eventually(async () => (await r.redis.zcard(`${r.prefix}lru`)) === 1), `${what}: the session went idle`);
    for (const key of ['idle', 'lru', 'lrun']) assert.ok((await r.redis.pttl(`${r.prefix}${key}`)) > 0, `${what}: ${key} has a TTL`);
  };
  try {
    const id = await visit(engine);
    await idleWithTtl('first release');
    const again = await engine.acquire({ sessionId: id, ip: IP }); // busy: the idle sets empty, and Redis deletes them
    assert.equal(await r.redis.exists(`${r.prefix}idle`, `${r.prefix}lru`), 0);
    again.release();
    await idleWithTtl('made again');
  } finally {
    await engine.stop();
  }
  assert.deepEqual(errors, []);
});

test('Redis store: options set at run time expire with the cluster: the shared keys\' TTL while nodes run, kept while one runs, gone with the last one\'s stop; a cluster started afresh runs with its own', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const errors: SessionError[] = [];
  const a = nodeOn(r, errors);
  const b = nodeOn(r, errors);
  await Promise.all([visit(a), visit(b)]);
  a.setOption('maxSessions', 7);
  assert.ok(await eventually(() => b.getOption('maxSessions') === 7), 'applied on the other node');
  const ttl = await r.redis.pttl(`${r.prefix}opts`);
  assert.ok(ttl > 0 && Math.abs(ttl - (await r.redis.pttl(`${r.prefix}open`))) < 1_000, `the shared keys' TTL: ${ttl}`);
  await a.stop();
  assert.equal(await r.redis.hget(`${r.prefix}opts`, 'maxSessions'), '7', 'kept while a node runs');
  await b.stop();
  assert.equal(await r.redis.exists(`${r.prefix}opts`), 0, 'gone with the last node');

  const fresh = nodeOn(r, errors, { maxSessions: 50 });
  try {
    await visit(fresh);
    assert.equal(fresh.getOption('maxSessions'), 50, 'its own option, not the earlier cluster\'s');
  } finally {
    await fresh.stop();
  }
  assert.deepEqual(errors, []);
});

test('Redis store: cookieDomain reset to none on one node reaches the others and a node that joins later, nothing reported', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const errors: SessionError[] = [];
  const a = nodeOn(r, errors, { cookieDomain: 'example.com' });
  const b = nodeOn(r, errors, { cookieDomain: 'example.com' });
  const late = nodeOn(r, errors, { cookieDomain: 'example.com' });
  try {
    await Promise.all([visit(a), visit(b)]);
    a.setOption('cookieDomain', 'example.org');
    assert.ok(await eventually(() => b.getOption('cookieDomain') === 'example.org'));
    a.setOption('cookieDomain', undefined);
    assert.ok(await eventually(() => b.getOption('cookieDomain') === undefined), 'reset on the running node');
    await visit(late);
    assert.equal(late.getOption('cookieDomain'), undefined, 'and on the node that joined later');
  } finally {
    await Promise.all([a.stop(), b.stop(), late.stop()]);
  }
  assert.deepEqual(errors, []);
});

test('Redis store: a timeout raised at run time gives the open sessions\' keys and their locks the new lifetime at once (they expired by the old one: the sessions vanished without their hook); a lowered one shortens nothing', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const errors: SessionError[] = [];
  const SHORT_MS = 5_000;
  const SESSIONS = 600; // more than one ZSCAN step of the open set
  const engine = nodeOn(r, errors, { inactiveProcessTimeoutMs: SHORT_MS, inactiveSessionTimeoutMs: SHORT_MS, maxSessions: 1_000, maxConcurrentProcesses: 1_000 }, 1_000);
  try {
    const ids: string[] = [];
    for (let i = 0; i < SESSIONS; i++) {
      const lease = await engine.acquire({ sessionId: undefined, ip: IP });
      if (i < 3) assert.equal(await lease.proc.locks.tryLock('Stock', i), true);
      ids.push(lease.sessionId);
      lease.release();
    }
    const lockKey = `${r.prefix}lock:5:Stock:number:0`;
    const lifetimes = async (): Promise<number[]> => Promise.all([...ids.map((id) => r.redis.pttl(`${r.prefix}s:${id}`)), r.redis.pttl(lockKey), r.redis.pttl(`${r.prefix}open`)]);
    assert.ok(await eventually(async () => (await lifetimes()).every((ms) => ms > 0 && ms <= SHORT_MS + 1_000)), 'the short lifetime first');

    engine.setOption('inactiveProcessTimeoutMs', 600_000);
    assert.ok(await eventually(async () => (await lifetimes()).every((ms) => ms > SHORT_MS + 1_000)), `extended: ${String(await lifetimes())}`);
    engine.setOption('inactiveProcessTimeoutMs', SHORT_MS);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.ok((await lifetimes()).slice(0, -1).every((ms) => ms > SHORT_MS + 1_000), 'a lowering shortens no session\'s keys');
  } finally {
    await engine.stop();
  }
  assert.deepEqual(errors, []);
});

test('Redis store: the closing set a claim makes expires from the start too', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const errors: SessionError[] = [];
  let release!: () => void;
  const hookHeld = new Promise<void>((resolve) => { release = resolve; });
  const engine = nodeOn(r, errors, { onClose: () => hookHeld });
  try {
    const id = await visit(engine);
    const closing = engine.closeSession(id);
    assert.ok(await eventually(async () => (await r.redis.zcard(`${r.prefix}closing`)) === 1), 'claimed, its hook running');
    assert.ok((await r.redis.pttl(`${r.prefix}closing`)) > 0, 'closing has a TTL');
    release();
    assert.equal(await closing, true);
  } finally {
    release();
    await engine.stop();
  }
  assert.deepEqual(errors, []);
});
