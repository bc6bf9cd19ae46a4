// A record lock taken by a process of a session whose close, claimed by another node, has already
// finished (FINISH freed the locks the session held then): a request the close stopped waiting for, or
// a process whose init ended while the hooks ran. Its release finds the session gone and frees the lock,
// instead of leaving it held by a closed session for a key lifetime (hours). A request's lock calls are
// fenced by its process token in Redis since (run-locks.ts): a straggler's tryLock after FINISH is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type RequestLease, type SessionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { track } from './engine-harness.js';
import { deferred, eventually } from './helpers.js';
import { redisForTest, type RedisForTest } from './redis-support.js';
import { HeldMessages, IP, node, stopAll, type Vars, settledAsTimePasses } from './redis-crossing.js';

async function nodeOn(r: RedisForTest, clock: ManualClock, options: { init?: (proc: unknown) => Vars | Promise<Vars>; onClose?: () => void | Promise<void> } = {}) {
  const client = await r.client();
  const errors: SessionError[] = [];
  const engine = new SessionEngine<Vars>({
    clock, closeTimeoutMs: 10_000, processesPerSession: 2, ...(options.init ? { init: options.init } : {}), ...(options.onClose ? { onClose: options.onClose } : {}),
    store: createRedisStore({ redis: client, prefix: r.prefix, pollIntervalMs: 5, sweepIntervalMs: 1_000 }),
  });
  engine.on('error', (e) => errors.push(e));
  return { engine, errors };
}

const RECORD = { table: 'Stock', key: 42 };

test('redis: a request still running when another node\'s close gave up waiting for it (closeTimeoutMs) tries to take a lock after the close finished, before its node hears so: Redis refuses it, and hearing it tears the request\'s process down as the memory store does (the lock freed, later lock calls refused)', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const held = new HeldMessages('x ');
  const x = await node(r, clock, { held });
  const y = await node(r, clock);
  const leases: (RequestLease<Vars> | undefined)[] = [];
  let closing: ReturnType<typeof track<boolean>> | undefined;
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(a);
    const id = a.sessionId;
    held.on = true; // x hears of the close's end only when told
    closing = track(y.engine.closeSession(id));
    assert.ok(await settledAsTimePasses(clock, closing!), 'the close gave up on the request and finished');
    assert.equal(await r.redis.exists(`${r.prefix}s:${id}`), 0, 'the session left Redis');
    // Its lock call is fenced by its process token (src/redis/run-locks.ts): Redis, where the session is gone, refuses it.
    await assert.rejects(a.proc.locks.tryLock(RECORD.table, RECORD.key), { code: 'ERR_SESSION_CLOSED' }, 'the straggler cannot take the record');
    held.on = false;
    held.deliver();
    assert.ok(await eventually(() => a.proc.closed, 5_000), 'torn down once its node heard the close end');
    await assert.rejects(a.proc.locks.tryLock('Other', 1), { code: 'ERR_SESSION_CLOSED' });
    const b = await y.engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(b);
    assert.ok(await eventually(() => b.proc.locks.tryLock(RECORD.table, RECORD.key), 5_000), `the closed session ${id} holds the record no more, its request still running`);
    assert.deepEqual(a.proc.vars, {}, 'its vars reset');
  } finally {
    held.deliver();
    await stopAll(clock, leases, closing, x, y);
  }
});

test('redis: a second process whose init ends while another node runs the close\'s hooks (sessionLeftRedis says not yet), then FINISH runs: the process is torn down when its node hears so, and cannot lock a record', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const initGate = deferred<Vars>();
  const hookGate = deferred();
  let hooks = 0;
  let inits = 0;
  const x = await nodeOn(r, clock, { init: () => (++inits === 2 ? initGate.promise : {}) });
  const y = await nodeOn(r, clock, { onClose: async () => { hooks++; await hookGate.promise; } });
  const leases: RequestLease<Vars>[] = [];
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(a);
    const id = a.sessionId;
    const second = x.engine.acquire({ sessionId: id, ip: IP });
    assert.ok(await eventually(() => inits === 2, 5_000));
    a.release();
    const closing = track(y.engine.closeSession(id));
    // the second process (its init pending) is busy: the drain gives up at closeTimeoutMs, the hooks begin
    assert.ok(await eventually(() => { clock.advance(2_000); return hooks > 0; }, 5_000), 'hooks began on y');
    assert.ok(await eventually(() => x.engine.sessionExpiration(id) === null, 5_000), 'x heard of the close');
    initGate.resolve({});
    const lease = await second; // sessionLeftRedis: the key is still there, so the request runs
    leases.push(lease);
    hookGate.resolve();
    assert.ok(await eventually(() => closing.settled, 5_000), 'the close finished');
    assert.equal(await r.redis.exists(`${r.prefix}s:${id}`), 0);
    assert.ok(await eventually(() => lease.proc.closed, 5_000), 'x heard the close end: the late request\'s process is torn down');
    await assert.rejects(lease.proc.locks.tryLock(RECORD.table, RECORD.key), { code: 'ERR_SESSION_CLOSED' });
    lease.release();
    const b = await x.engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(b);
    assert.equal(await b.proc.locks.tryLock(RECORD.table, RECORD.key), true);
  } finally {
    initGate.resolve({});
    hookGate.resolve();
    for (const l of leases) l.release();
    clock.advance(60_000);
    await Promise.all([x.engine.stop(), y.engine.stop()]);
  }
});

test('redis: the same straggler on a node that lost the close\'s messages (pub/sub drops them across a reconnect): its lock call is refused, its release asks Redis and finds the session gone', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const held = new HeldMessages('c ', 'x ');
  const x = await node(r, clock, { held });
  const y = await node(r, clock);
  const leases: (RequestLease<Vars> | undefined)[] = [];
  let closing: ReturnType<typeof track<boolean>> | undefined;
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(a);
    const id = a.sessionId;
    held.on = true; // x's subscriber never hears of the close
    closing = track(y.engine.closeSession(id));
    assert.ok(await settledAsTimePasses(clock, closing!), 'the close gave up on the request and finished');
    assert.equal(await r.redis.exists(`${r.prefix}s:${id}`), 0, 'the session left Redis');
    // Its lock call is fenced by its process token (src/redis/run-locks.ts): Redis, where the session is gone, refuses it.
    await assert.rejects(a.proc.locks.tryLock(RECORD.table, RECORD.key), { code: 'ERR_SESSION_CLOSED' }, 'the straggler cannot take the record');
    a.release();
    const b = await y.engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(b);
    assert.ok(await eventually(() => b.proc.locks.tryLock(RECORD.table, RECORD.key), 5_000), `the closed session ${id} holds the record no more once the request is over`);
  } finally {
    held.deliver();
    await stopAll(clock, leases, closing, x, y);
  }
});
