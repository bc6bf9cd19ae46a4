// A Redis node's stop() and what comes after it: a request that stops the engine itself goes on after
// the stop resolved (it does not wait for its caller), so its release must still reach Redis, and the
// engine's calls after the stop answer as on the memory store (closeSession false, options kept
// locally, no session, process or closing session left in the gauges), with nothing reported.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { ManualClock, SessionEngine } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { ownRedisForTest } from './fixtures/redis-server.js';

const IP = '127.0.0.1';

test('Redis store: a request that calls stop() releases its process after the stop resolved: its release lands, nothing is reported, no node key is left', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const engine = new SessionEngine<{ n: number }>({ clock: new ManualClock(), init: () => ({ n: 0 }), store: createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: 20 }) });
  const errors: string[] = [];
  engine.on('error', (error) => errors.push(`${error.code}: ${error.message}`));
  const lease = await engine.acquire({ sessionId: undefined, ip: IP });
  await lease.run(async () => {
    lease.proc.vars.n = 1;
    await engine.stop();
  });
  lease.release();
  assert.ok(await eventually(async () => (await r.redis.keys(`${r.prefix}nb:*`)).length === 0, 5_000), 'the node\'s list of what it runs is gone: the release landed');
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.deepEqual(errors, []);
});

test('Redis store: after stop(), closeSession answers false, setOption is kept locally, stats show no closing session, and nothing is reported', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const engine = new SessionEngine({ clock: new ManualClock(), store: createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: 20 }) });
  const errors: string[] = [];
  engine.on('error', (error) => errors.push(`${error.code}: ${error.message}`));
  const ids: string[] = [];
  for (let i = 0; i < 2; i++) {
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    ids.push(lease.sessionId);
    lease.release();
  }
  await engine.stop();
  assert.equal(await engine.closeSession(ids[0]!), false);
  engine.setOption('maxSessions', 5);
  assert.equal(engine.getOption('maxSessions'), 5);
  assert.equal(engine.stats().closingSessions, 0);
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.deepEqual(errors, []);
});

test('Redis store: after the only node stopped and closed every session, stats() gauges are at rest (no session, no process left counted)', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const engine = new SessionEngine({ clock, store: createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: 20, sweepIntervalMs: 1_000 }) });
  const errors: string[] = [];
  engine.on('error', (error) => errors.push(`${error.code}: ${error.message}`));
  for (let i = 0; i < 3; i++) {
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    lease.release();
  }
  // A sweep reads the cluster's gauges.
  assert.ok(await eventually(() => { clock.advance(1_000); return engine.stats().sessions === 3; }, 5_000), 'a sweep counted the 3 sessions');
  await engine.stop();
  const stats = engine.stats();
  assert.equal(stats.closed.shutdown, 3, 'the stop closed the 3 sessions');
  assert.deepEqual(engine.sessions(), []);
  assert.deepEqual(
    { sessions: stats.sessions, idleSessions: stats.idleSessions, busySessions: stats.busySessions, processes: stats.processes },
    { sessions: 0, idleSessions: 0, busySessions: 0, processes: 0 },
    'a stopped node (alone, every session closed by it) reports no session or process, as a stopped memory engine does',
  );
  assert.deepEqual(errors, []);
});

test('Redis store, onStop keep: after stop(), the node\'s views agree with its stats(): no session, no process, no expiry', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const engine = new SessionEngine({ clock: new ManualClock(), store: createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: 20, onStop: 'keep' }) });
  const errors: string[] = [];
  engine.on('error', (error) => errors.push(`${error.code}: ${error.message}`));
  const lease = await engine.acquire({ sessionId: undefined, ip: IP });
  lease.release();
  await engine.stop();
  const stats = engine.stats();
  assert.equal(stats.sessions, 0);
  assert.equal(stats.processes, 0);
  assert.deepEqual({
    sessions: engine.sessions().map((s) => s.id),
    processCount: engine.sessionProcessCount(lease.sessionId),
    expiration: engine.sessionExpiration(lease.sessionId),
  }, { sessions: [], processCount: 0, expiration: null }, 'as a stopped memory engine answers, and as its own stats() say');
  assert.deepEqual(errors, []);
});

for (const client of ['its own', 'the application\'s'] as const) {
  test(`Redis store on ${client} client: the release of the request that called stop() fails (Redis went away, the command connection still open): reported, not silent`, { timeout: 30_000 }, async (t: TestContext) => {
    const server = await ownRedisForTest(t); // stopped below: never the shared Redis
    if (server === undefined) return;
    const appClient = client === 'its own' ? undefined : new Redis(server.url, { maxRetriesPerRequest: 0, commandTimeout: 1_000 });
    appClient?.on('error', () => {});
    t.after(() => appClient?.disconnect());
    const connection = appClient === undefined ? { url: server.url } : { redis: appClient };
    const engine = new SessionEngine<{ n?: number }>({ closeTimeoutMs: 2_000, store: createRedisStore({ ...connection, prefix: 'lws-test:release-after-stop:', onStop: 'keep', commandTimeoutMs: 1_000 }) });
    const messages: string[] = [];
    engine.on('error', (error) => messages.push(`${error.code}: ${error.message}`));
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    await lease.run(() => engine.stop());
    await server.stop();
    lease.proc.vars.n = 42;
    lease.release();
    assert.ok(await eventually(() => messages.some((m) => m.startsWith('ERR_SESSION_STORE_UNAVAILABLE')), 10_000), `the failed save is reported: ${JSON.stringify(messages)}`);
    assert.ok(engine.stats().storeErrors >= 1);
  });
}
