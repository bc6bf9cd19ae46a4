// Bad arguments to the process and lease API get a SessionArgumentError (ERR_SESSION_INVALID_ARGUMENT),
// as locks.tryLock and spawn already do: never a bare TypeError from deep inside, a silent no-op, or a
// value accepted on the memory store that the Redis store cannot save (the request's vars lost with it).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type SessionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { redisForTest } from './redis-support.js';

const IP = '127.0.0.1';
const invalidArgument = { name: 'SessionArgumentError', code: 'ERR_SESSION_INVALID_ARGUMENT' };

test('lease.run(fn) with no function throws ERR_SESSION_INVALID_ARGUMENT', { timeout: 10_000 }, async () => {
  const engine = new SessionEngine({ clock: new ManualClock() });
  const lease = await engine.acquire({ sessionId: undefined, ip: IP });
  assert.throws(() => lease.run(42 as never), invalidArgument);
  assert.throws(() => (lease.run as (fn?: unknown) => unknown)(), invalidArgument);
  lease.release();
  await engine.stop();
});

test('selections: keys that are neither strings nor numbers, and a table that is no string for get/clear, throw ERR_SESSION_INVALID_ARGUMENT', { timeout: 10_000 }, async () => {
  const engine = new SessionEngine({ clock: new ManualClock() });
  const lease = await engine.acquire({ sessionId: undefined, ip: IP });
  const selections = lease.proc.selections;
  selections.set('orders', [1, 'two', 3]);
  assert.throws(() => selections.set('orders', [1, { id: 2 }] as never), invalidArgument);
  assert.throws(() => selections.set('orders', [Symbol('x')] as never), invalidArgument);
  assert.throws(() => selections.set('orders', [null] as never), invalidArgument);
  assert.throws(() => selections.set('orders', new BigInt64Array([1n]) as never), invalidArgument, 'a typed array of bigints');
  assert.throws(() => selections.get(42 as never), invalidArgument);
  assert.throws(() => selections.clear(null as never), invalidArgument);
  assert.deepEqual(selections.get('orders')?.keys, [1, 'two', 3], 'the refused calls changed nothing');
  lease.release();
  await engine.stop();
});

test('Redis store: a selection key the store cannot save is refused at set(), so the request\'s vars are not lost at its release', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const engine = new SessionEngine<{ user?: string }>({ clock: new ManualClock(), store: createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: 20 }) });
  const errors: SessionError[] = [];
  engine.on('error', (error) => errors.push(error));
  const first = await engine.acquire({ sessionId: undefined, ip: IP });
  first.proc.vars.user = 'ann';
  let thrown: unknown;
  try {
    first.proc.selections.set('orders', [1, Symbol('a symbol id')] as never);
  } catch (error) {
    thrown = error;
  }
  first.release();
  const second = await engine.acquire({ sessionId: first.sessionId, ip: IP });
  const saved = second.proc.vars.user;
  second.release();
  await engine.stop();
  assert.deepEqual(errors.map((e) => e.code), [], 'nothing failed at the release');
  assert.equal(saved, 'ann', 'the login survived the request');
  assert.equal((thrown as SessionError | undefined)?.code, 'ERR_SESSION_INVALID_ARGUMENT');
});
