// Redis failing at awkward moments on the Redis store: what fails is reported on 'error', never thrown
// into the event loop (an unhandled rejection ends a Node process). Each failure is made by wrapping one
// of the store's scripts on a client the test owns (test/redis-crossing.ts).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type SessionEngineOptions } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { eventually, settle } from './helpers.js';
import { wrapScript, type Vars } from './redis-crossing.js';
import { redisForTest, type RedisForTest } from './redis-support.js';

const IP = '127.0.0.1';
const escaped: unknown[] = [];
const onEscape = (error: unknown): void => { escaped.push(error); };
before(() => process.on('unhandledRejection', onEscape));
after(() => process.off('unhandledRejection', onEscape));

async function engineOn(r: RedisForTest, options: SessionEngineOptions<Vars>, onStop: 'close' | 'keep' | 'auto' = 'auto'): Promise<{ engine: SessionEngine<Vars>; client: Awaited<ReturnType<RedisForTest['client']>>; errors: string[] }> {
  const client = await r.client();
  const engine = new SessionEngine<Vars>({ clock: new ManualClock(), closeTimeoutMs: 1_000, ...options, store: createRedisStore({ redis: client, prefix: r.prefix, pollIntervalMs: 5, onStop }) });
  const errors: string[] = [];
  engine.on('error', (error) => errors.push(error.code));
  return { engine, client, errors };
}

const failing = (): never => { throw new Error('Connection is closed.'); };

test("'none' mode: a throw-away process whose lock release fails at its end is reported, nothing escapes", { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const { engine, client, errors } = await engineOn(r, { mode: 'none' });
  try {
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    assert.equal(await lease.proc.locks.tryLock('Products', 7), true);
    wrapScript(client, 'lwsLockReleaseAll', () => async () => failing());
    lease.release();
    assert.ok(await eventually(() => errors.length > 0, 5_000), 'the failed lock release was reported');
    await settle(20); // and nothing more: no second report, nothing escapes
    assert.deepEqual(errors, ['ERR_SESSION_STORE_UNAVAILABLE']);
    assert.deepEqual(escaped, []);
  } finally {
    await engine.stop();
  }
});

test("stop() with onStop 'close' while a request runs and Redis fails the cluster close: reported, stop() ends, nothing escapes", { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const { engine, client, errors } = await engineOn(r, {}, 'close');
  const lease = await engine.acquire({ sessionId: undefined, ip: IP });
  let claimAllCalls = 0;
  wrapScript(client, 'lwsClaimAll', () => async () => { claimAllCalls++; return failing(); });
  const stopping = engine.stop();
  assert.ok(await eventually(() => claimAllCalls > 0, 5_000), 'the stop asked Redis for the cluster close while the request runs');
  lease.release();
  await stopping;
  assert.ok(await eventually(() => errors.includes('ERR_SESSION_STORE_UNAVAILABLE'), 5_000), `reported: ${errors.join(', ')}`);
  await settle(20); // nothing escapes
  assert.deepEqual(escaped, []);
});

test('a node started while Redis is away: requests arriving during one start attempt share it, each answered 503 when it fails (not one attempt per request before it)', { timeout: 20_000 }, async () => {
  // A port nothing listens on: every connection is refused, the start waits closeTimeoutMs for 'ready'.
  const probe = await import('node:net').then((net) => new Promise<number>((resolve) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  }));
  const engine = new SessionEngine<Vars>({ closeTimeoutMs: 400, store: createRedisStore({ url: `redis://127.0.0.1:${probe}`, prefix: 'lws-test:down:' }) });
  engine.on('error', () => {});
  try {
    const settledAtMs: number[] = [];
    const requests = [0, 1, 2, 3].map(() => engine.acquire({ sessionId: undefined, ip: IP }).then(
      () => assert.fail('Redis is away'),
      (error: { code?: string }) => { settledAtMs.push(Date.now()); return error.code; },
    ));
    assert.deepEqual(await Promise.all(requests), Array(4).fill('ERR_SESSION_STORE_UNAVAILABLE'));
    const spreadMs = Math.max(...settledAtMs) - Math.min(...settledAtMs);
    assert.ok(spreadMs < 200, `the four 503s came together (one attempt), not one start attempt (400 ms) apart: ${spreadMs} ms`);
  } finally {
    await engine.stop();
  }
});

test('a Redis that stops answering without closing the connection: a request fails with 503 after commandTimeoutMs instead of hanging, and stop() ends', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const net = await import('node:net');
  const upstreamUrl = new URL(r.url);
  // A proxy in front of the test's Redis that can stop passing Redis's answers on (the connection stays up).
  const silent = { on: false };
  const sockets = new Set<import('node:net').Socket>();
  const proxy = net.createServer((client) => {
    const upstream = net.connect(Number(upstreamUrl.port || 6379), upstreamUrl.hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => { client.destroy(); upstream.destroy(); });
    }
    client.pipe(upstream);
    upstream.on('data', (chunk: Buffer) => { if (!silent.on) client.write(chunk); });
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const { port } = proxy.address() as { port: number };
  const engine = new SessionEngine<Vars>({ closeTimeoutMs: 1_000, store: createRedisStore({ url: `redis://127.0.0.1:${port}`, prefix: r.prefix, commandTimeoutMs: 300 }) });
  const errors: string[] = [];
  engine.on('error', (error) => errors.push(error.code));
  try {
    const first = await engine.acquire({ sessionId: undefined, ip: IP });
    first.release();
    silent.on = true;
    await assert.rejects(engine.acquire({ sessionId: first.sessionId, ip: IP }), { code: 'ERR_SESSION_STORE_UNAVAILABLE' });
  } finally {
    await engine.stop();
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => proxy.close(() => resolve()));
  }
  assert.deepEqual(escaped, []);
});

test('createRedisStore refuses a commandTimeoutMs that is not a positive integer', () => {
  assert.throws(() => createRedisStore({ url: 'redis://127.0.0.1:6379', commandTimeoutMs: 0 }), /commandTimeoutMs must be an integer/);
  assert.throws(() => createRedisStore({ url: 'redis://127.0.0.1:6379', commandTimeoutMs: 1.5 }), /commandTimeoutMs must be an integer/);
});

test('a release fenced on its first try (its process was freed under it: the node taken for dead) is reported, ERR_SESSION_WRITE_FENCED: its changes are lost, the state before stands', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const { engine, errors } = await engineOn(r, {});
  try {
    const first = await engine.acquire({ sessionId: undefined, ip: IP });
    first.proc.vars.n = 1;
    first.release();
    assert.ok(await eventually(async () => (await r.redis.zscore(`${r.prefix}idle`, first.sessionId)) !== null, 5_000), 'the first release landed');
    const lease = await engine.acquire({ sessionId: first.sessionId, ip: IP });
    // What a sweep does to the processes of a node it finds dead.
    await r.redis.hset(`${r.prefix}s:${lease.sessionId}`, `b:${lease.proc.processId}`, '0');
    lease.proc.vars.n = 2;
    lease.release();
    assert.ok(await eventually(() => errors.length > 0, 5_000), 'the fenced release was reported');
    assert.deepEqual(errors, ['ERR_SESSION_WRITE_FENCED']);
    const next = await engine.acquire({ sessionId: first.sessionId, ip: IP });
    assert.equal(next.proc.vars.n, 1, 'the state saved before stands');
    next.release();
  } finally {
    await engine.stop();
  }
});
