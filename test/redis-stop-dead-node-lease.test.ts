// onStop 'auto' and a node killed within its lease (src/redis/heartbeat.ts): the stopping node waits for
// an unconfirmed node "until its key expires". The key's lifetime is the dead node's own nodeLeaseMs
// (HEARTBEAT sets it with the beating node's lease), and the wait ends on a beat whose reply may come
// late: either way the stop must not end keeping every session without a word.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type SessionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { redisForTest, type RedisForTest } from './redis-support.js';
import { IP, wrapScript, type Vars } from './redis-crossing.js';

async function stoppingNode(r: RedisForTest, nodeLeaseMs: number): Promise<{ engine: SessionEngine<Vars>; client: Awaited<ReturnType<RedisForTest['client']>>; hooked: string[]; errors: SessionError[] }> {
  const client = await r.client();
  const hooked: string[] = [];
  const engine = new SessionEngine<Vars>({
    clock: new ManualClock(), closeTimeoutMs: 5_000, onClose: (_proc, reason) => { hooked.push(reason); },
    store: createRedisStore({ redis: client, prefix: r.prefix, nodeLeaseMs, pollIntervalMs: 20, sweepIntervalMs: 60_000, onStop: 'auto' }),
  });
  const errors: SessionError[] = [];
  engine.on('error', (error) => errors.push(error));
  return { engine, client, hooked, errors };
}

/** A node that beat just now (Redis's time, ms) with a lease of `leaseMs`, then was killed (SIGKILL: it never beats again). */
async function killedNode(r: RedisForTest, leaseMs: number): Promise<void> {
  const [seconds, micros] = await r.redis.time();
  const nowMs = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  await r.redis.multi().sadd(`${r.prefix}nodes`, 'killed').set(`${r.prefix}node:killed`, String(nowMs - 1), 'PX', leaseMs).exec();
}

test('onStop auto: the last live node stops right after a node with a longer nodeLeaseMs was killed: its sessions close with \'shutdown\' (or the stop says why not)', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const x = await stoppingNode(r, 600);
  const lease = await x.engine.acquire({ sessionId: undefined, ip: IP });
  lease.release();
  // The other node ran with nodeLeaseMs 2 000 (a rolling change of the setting, say), and was killed.
  await killedNode(r, 2_000);
  await x.engine.stop();
  assert.deepEqual({ hooked: x.hooked, errors: x.errors.map((e) => e.code) }, { hooked: ['shutdown'], errors: [] },
    'the session was kept in Redis, no hook ran, nothing reported');
});

test('onStop auto: the stop\'s last look at a killed node\'s key comes late (this node\'s loop busy): its sessions still close with \'shutdown\' (or the stop says why not)', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const x = await stoppingNode(r, 600);
  const lease = await x.engine.acquire({ sessionId: undefined, ip: IP });
  lease.release();
  await killedNode(r, 600); // the same lease as this node's
  // A poll of the stop runs in Redis while the killed node's key still lives; its reply is handled only
  // after the stop's deadline (a long synchronous handler, a GC pause: this node's requests still run).
  let delayed = false;
  wrapScript(x.client, 'lwsHeartbeat', (beat) => async (...args) => {
    const reply = await beat(...args);
    if (Number(args[5]) > 0 && !delayed) {
      delayed = true;
      await new Promise((resolve) => setTimeout(resolve, 700));
    }
    return reply;
  });
  await x.engine.stop();
  assert.deepEqual({ hooked: x.hooked, errors: x.errors.map((e) => e.code) }, { hooked: ['shutdown'], errors: [] },
    'the session was kept in Redis, no hook ran, nothing reported');
});

test('onStop auto: a node still draining a long request past its nodeLeaseMs is stopping, not alive: the node that stops after it, the last one, closes every session with \'shutdown\'', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const x = await stoppingNode(r, 600);
  const y = await stoppingNode(r, 600);
  const long = await x.engine.acquire({ sessionId: undefined, ip: IP }); // a long request (an upload, a long poll)
  const other = await y.engine.acquire({ sessionId: undefined, ip: IP });
  other.release();
  const xStopped = x.engine.stop(); // y is alive: x keeps the sessions and drains its request
  await new Promise((resolve) => setTimeout(resolve, 1_000)); // more than x's lease: x still drains, and beats
  const yStopped = y.engine.stop(); // the last node: x is stopping
  await new Promise((resolve) => setTimeout(resolve, 200));
  long.release(); // the close of x's session waits for it
  await Promise.all([xStopped, yStopped]);
  for (let i = 0; i < 100 && x.hooked.length + y.hooked.length < 2; i++) await new Promise((resolve) => setTimeout(resolve, 20));
  assert.deepEqual({ hooked: [...x.hooked, ...y.hooked], errors: [...x.errors, ...y.errors].map((e) => e.code) }, { hooked: ['shutdown', 'shutdown'], errors: [] },
    'both sessions were kept in Redis with no node left: no hook ran, nothing reported');
});
