// A node's stop and the other nodes (src/redis/heartbeat.ts): nodes stopping at the same moment, a live
// node that misses the stopping node's 'h', a node that stops with onStop 'keep' while another stops
// with 'auto', and the run-time options going with the last node's stop whatever its onStop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type SessionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { redisForTest, type RedisForTest } from './redis-support.js';
import { IP, type Vars } from './redis-crossing.js';

interface StopNode { engine: SessionEngine<Vars>; hooked: string[]; errors: SessionError[]; deaf: { on: boolean } }

async function stopNode(r: RedisForTest, nodeLeaseMs: number, onStop: 'auto' | 'keep' | 'close' = 'auto'): Promise<StopNode> {
  const client = await r.client();
  // Its subscriber (a duplicate of the client) can be made deaf: it loses every message.
  const deaf = { on: false };
  const duplicate = client.duplicate.bind(client);
  client.duplicate = (override?: Parameters<typeof client.duplicate>[0]) => {
    const made = duplicate(override);
    const emit = made.emit.bind(made);
    made.emit = (event: string | symbol, ...rest: unknown[]): boolean => (event === 'message' && deaf.on ? true : emit(event, ...rest));
    return made;
  };
  const hooked: string[] = [];
  const engine = new SessionEngine<Vars>({
    clock: new ManualClock(), closeTimeoutMs: 5_000, onClose: (_proc, reason) => { hooked.push(reason); },
    store: createRedisStore({ redis: client, prefix: r.prefix, nodeLeaseMs, pollIntervalMs: 20, sweepIntervalMs: 60_000, onStop }),
  });
  const errors: SessionError[] = [];
  engine.on('error', (error) => errors.push(error));
  return { engine, hooked, errors, deaf };
}

async function withSession(n: StopNode): Promise<void> {
  const lease = await n.engine.acquire({ sessionId: undefined, ip: IP });
  lease.release();
}

async function hooksSettle(nodes: StopNode[], count: number): Promise<string[]> {
  for (let i = 0; i < 50 && nodes.reduce((sum, n) => sum + n.hooked.length, 0) < count; i++) await new Promise((resolve) => setTimeout(resolve, 20));
  return nodes.flatMap((n) => n.hooked);
}

test('onStop auto: two nodes (the whole cluster) stopped in the same tick: every session closes once with \'shutdown\', nothing reported', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const x = await stopNode(r, 600);
  const y = await stopNode(r, 600);
  await withSession(x);
  await withSession(y);
  await Promise.all([x.engine.stop(), y.engine.stop()]);
  assert.deepEqual({ hooked: await hooksSettle([x, y], 2), errors: [...x.errors, ...y.errors].map((e) => e.code) }, { hooked: ['shutdown', 'shutdown'], errors: [] });
});

test('onStop auto: two of three nodes stopped in the same tick keep every session (the third is alive), then the third closes them', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const x = await stopNode(r, 600);
  const y = await stopNode(r, 600);
  const z = await stopNode(r, 600);
  await withSession(x);
  await withSession(y);
  await withSession(z);
  await Promise.all([x.engine.stop(), y.engine.stop()]);
  assert.deepEqual({ hooked: [...x.hooked, ...y.hooked, ...z.hooked], errors: [...x.errors, ...y.errors].map((e) => e.code) }, { hooked: [], errors: [] });
  await z.engine.stop();
  assert.deepEqual({ hooked: await hooksSettle([x, y, z], 3), errors: z.errors.map((e) => e.code) }, { hooked: ['shutdown', 'shutdown', 'shutdown'], errors: [] });
});

test('onStop auto: a node stops while another node is alive but deaf to the channel (it misses \'h\'): it waits for that node\'s next beat and keeps every session, nothing reported', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const y = await stopNode(r, 1_500); // beats every 500 ms
  const x = await stopNode(r, 600);
  await withSession(x);
  y.deaf.on = true;
  const started = performance.now();
  await x.engine.stop();
  const tookMs = performance.now() - started;
  assert.deepEqual({ hooked: [...x.hooked, ...y.hooked], errors: x.errors.map((e) => e.code) }, { hooked: [], errors: [] });
  assert.ok(tookMs < 1_500, `the stop took ${Math.round(tookMs)} ms`);
  y.deaf.on = false;
  await y.engine.stop();
  assert.deepEqual({ hooked: await hooksSettle([x, y], 1), errors: y.errors.map((e) => e.code) }, { hooked: ['shutdown'], errors: [] });
});

test('onStop auto: the last node stops while a node stopped with onStop keep still drains a long request: that node is leaving, not serving: every session closes with \'shutdown\'', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const k = await stopNode(r, 600, 'keep');
  const x = await stopNode(r, 600);
  const long = await k.engine.acquire({ sessionId: undefined, ip: IP }); // a long request (an upload, a long poll)
  await withSession(x);
  const kStopped = k.engine.stop(); // keeps the sessions, drains its request
  await new Promise((resolve) => setTimeout(resolve, 100));
  const xStopped = x.engine.stop(); // the last node that goes on serving: none is left after it
  await new Promise((resolve) => setTimeout(resolve, 200));
  long.release(); // the close of k's session waits for it
  await Promise.all([kStopped, xStopped]);
  assert.deepEqual({ hooked: await hooksSettle([k, x], 2), errors: [...k.errors, ...x.errors].map((e) => e.code) }, { hooked: ['shutdown', 'shutdown'], errors: [] },
    'both sessions were kept in Redis with no node left: no hook ran, nothing reported');
});

for (const onStop of ['close', 'keep'] as const) {
  test(`onStop ${onStop}: options set at run time go with the last node's stop() (as with 'auto')`, { timeout: 20_000 }, async (t) => {
    const r = await redisForTest(t);
    if (r === undefined) return;
    const x = await stopNode(r, 600, onStop);
    await withSession(x);
    x.engine.setOption('maxSessions', 5);
    for (let i = 0; i < 50 && await r.redis.exists(`${r.prefix}opts`) === 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(await r.redis.exists(`${r.prefix}opts`), 1, 'the option reached Redis');
    await x.engine.stop();
    assert.equal(await r.redis.exists(`${r.prefix}opts`), 0, 'the options outlived the last node\'s stop');
  });
}
