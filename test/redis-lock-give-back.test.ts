// A record lock whose tryLock was in flight when its process was torn down (its session closed) is given
// back at once by tryLock. On Redis that give-back is a round trip too: one that fails (a Redis blip) is
// retried until it lands, as a teardown's release is, instead of leaving the record held by a closed
// session for a key lifetime (hours). A request's lock call is fenced by its process token in Redis
// (run-locks.ts), so one that lands after its session's close finished is refused there instead: either
// way the closed session holds no record. The give-back is for a call that lands between a local
// teardown and the close's FINISH (the second test holds FINISH to make that happen).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type RequestLease } from '../src/index.js';
import { track } from './engine-harness.js';
import { deferred, eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { IP, node, stopAll, wrapScript, type Vars } from './redis-crossing.js';

test('redis: a tryLock that lands after its process was torn down (logout meanwhile) is refused or gives the lock back, retried when the first give-back fails (Redis blip): the record is not held by the closed session', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const x = await node(r, clock);
  const leases: (RequestLease<Vars> | undefined)[] = [];
  const gate = deferred();
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(a);
    // The lock's script leaves for Redis only once the test lets it: after the teardown.
    wrapScript(x.client, 'lwsLockAcquireFenced', (acquire) => async (...args) => { await gate.promise; return acquire(...args); });
    const taking = track(a.run(() => a.proc.locks.tryLock('Stock', 42)));
    assert.equal(await a.run(() => x.engine.closeSession(x.engine.currentSessionId())), true, 'logout');
    assert.ok(a.proc.closed, 'the logout tore the caller down');
    let failures = 0;
    wrapScript(x.client, 'lwsLockReleaseAll', (releaseAll) => async (...args) => {
      if (failures++ === 0) throw new Error('injected: connection reset');
      return releaseAll(...args);
    });
    gate.resolve();
    assert.ok(await eventually(() => taking.settled, 5_000), 'the tryLock settled');
    assert.notEqual(taking.value, true, 'the torn-down process does not hold the record');
    const key = `${r.prefix}lock:5:Stock:number:42`;
    const freed = await eventually(async () => (await r.redis.exists(key)) === 0, 3_000);
    assert.ok(freed, `the closed session still holds the record: holder ${JSON.stringify(await r.redis.hgetall(key))}, TTL ${await r.redis.pttl(key)} ms, give-back tries ${failures}, tryLock ${taking.error === undefined ? String(taking.value) : (taking.error as { code?: string }).code}`);
  } finally {
    gate.resolve();
    await stopAll(clock, leases, undefined, x);
  }
});

test('redis: a tryLock that lands after its process was torn down on the closing node but before the close finished gives the lock back, retried when the first give-back fails', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const x = await node(r, clock);
  const leases: (RequestLease<Vars> | undefined)[] = [];
  const lockGate = deferred();
  const finishGate = deferred();
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(a);
    // The close's FINISH waits: the session's hash, with the process still the request's, stays in Redis.
    let finishing = false;
    wrapScript(x.client, 'lwsFinish', (finish) => async (...args) => { finishing = true; await finishGate.promise; return finish(...args); });
    wrapScript(x.client, 'lwsLockAcquireFenced', (acquire) => async (...args) => { await lockGate.promise; return acquire(...args); });
    const taking = track(a.run(() => a.proc.locks.tryLock('Stock', 43)));
    const loggingOut = track(a.run(() => x.engine.closeSession(x.engine.currentSessionId())));
    assert.ok(await eventually(() => finishing, 5_000), 'the close reached its FINISH');
    assert.ok(a.proc.closed, 'the caller was torn down before it');
    let failures = 0;
    wrapScript(x.client, 'lwsLockReleaseAll', (releaseAll) => async (...args) => {
      if (failures++ === 0) throw new Error('injected: connection reset');
      return releaseAll(...args);
    });
    lockGate.resolve();
    assert.ok(await eventually(() => taking.settled, 5_000), 'the tryLock settled');
    assert.equal(taking.error, undefined, 'it landed: the process was still the run\'s in Redis');
    const key = `${r.prefix}lock:5:Stock:number:43`;
    assert.ok(await eventually(async () => (await r.redis.exists(key)) === 0, 3_000), `given back: holder ${JSON.stringify(await r.redis.hgetall(key))}, tries ${failures}`);
    assert.ok(failures >= 2, 'its first give-back failed and was retried');
    finishGate.resolve();
    assert.ok(await eventually(() => loggingOut.settled, 5_000));
  } finally {
    lockGate.resolve();
    finishGate.resolve();
    await stopAll(clock, leases, undefined, x);
  }
});
