// A process state larger than the store's maxStateBytes is not stored: refused at the end of its request
// (ERR_SESSION_STATE_NOT_STORABLE), as a value that cannot be cloned, with the state saved before kept.
// Sent on, it would be refused by Redis (over proto-max-bulk-len), which cuts the connection the release
// went on: retried until the node stops, its session busy for good, and with it every session whose
// release went to Redis in the same call.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SessionEngine, SessionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';

const IP = '127.0.0.1';
const MAX_STATE_BYTES = 64 * 1024;

type Vars = { n: number; big?: string };

test('Redis: a state over maxStateBytes is refused (ERR_SESSION_STATE_NOT_STORABLE) and its session keeps the state saved before; a session released in the same call is saved and usable', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const errors: SessionError[] = [];
  const engine = new SessionEngine<Vars>({
    store: createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: 20, onStop: 'keep', maxStateBytes: MAX_STATE_BYTES }),
    init: () => ({ n: 0 }),
  });
  engine.on('error', (error) => errors.push(error));
  try {
    const a = await engine.acquire({ sessionId: undefined, ip: IP });
    const b = await engine.acquire({ sessionId: undefined, ip: IP });
    a.proc.vars.n = 1;
    b.proc.vars.n = 1;
    a.release();
    b.release();
    assert.ok(await eventually(() => engine.sessions().every((s) => !s.busy), 5_000), 'both first releases landed');

    const a2 = await engine.acquire({ sessionId: a.sessionId, ip: IP });
    const b2 = await engine.acquire({ sessionId: b.sessionId, ip: IP });
    a2.proc.vars.n = 2;
    a2.proc.vars.big = 'x'.repeat(MAX_STATE_BYTES);
    b2.proc.vars.n = 2;
    // Released in one turn: their releases go to Redis in one call.
    a2.release();
    b2.release();
    assert.ok(await eventually(() => engine.sessions().every((s) => !s.busy), 5_000), 'both processes are free again');
    assert.deepEqual(errors.map((e) => [e.code, e.sessionId]), [['ERR_SESSION_STATE_NOT_STORABLE', a.sessionId]]);
    assert.match(errors[0]!.message, /over maxStateBytes/);

    const b3 = await engine.acquire({ sessionId: b.sessionId, ip: IP });
    assert.equal(b3.sessionId, b.sessionId);
    assert.equal(b3.proc.vars.n, 2, "the other session's request was saved");
    b3.release();
    const a3 = await engine.acquire({ sessionId: a.sessionId, ip: IP });
    assert.equal(a3.sessionId, a.sessionId);
    assert.deepEqual(a3.proc.vars, { n: 1 }, 'the state saved before');
    a3.release();
  } finally {
    await engine.stop();
  }
});

test('createRedisStore refuses a maxStateBytes that is not a whole number of bytes >= 1', { timeout: 5_000 }, () => {
  for (const bad of [0, -1, 1.5, '1', Number.NaN]) {
    assert.throws(() => createRedisStore({ url: 'redis://127.0.0.1:1', maxStateBytes: bad as number }), { code: 'ERR_SESSION_INVALID_OPTION' }, String(bad));
  }
});

test('Redis: a request that leaves a state over maxStateBytes unchanged (written by a node with a larger maxStateBytes, or before the limit was lowered) writes nothing and reports nothing', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const errors: SessionError[] = [];
  const make = (maxStateBytes: number): SessionEngine<Vars> => {
    const engine = new SessionEngine<Vars>({
      store: createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: 20, onStop: 'keep', maxStateBytes, stateCopyBytes: 0 }),
      init: () => ({ n: 0 }),
    });
    engine.on('error', (error) => errors.push(error));
    return engine;
  };
  const large = make(4 * MAX_STATE_BYTES);
  const small = make(MAX_STATE_BYTES);
  try {
    const a = await large.acquire({ sessionId: undefined, ip: IP });
    a.proc.vars.n = 1;
    a.proc.vars.big = 'x'.repeat(2 * MAX_STATE_BYTES);
    a.release();
    assert.ok(await eventually(() => large.sessions().every((s) => !s.busy), 5_000), 'saved by the node that allows it');
    const read = await small.acquire({ sessionId: a.sessionId, ip: IP });
    assert.equal(read.proc.vars.n, 1);
    read.release(); // read only: nothing to store
    const again = await small.acquire({ sessionId: a.sessionId, ip: IP }); // its release has landed
    assert.equal(again.proc.vars.big?.length, 2 * MAX_STATE_BYTES);
    again.release();
    assert.ok(await eventually(() => small.sessions().every((s) => !s.busy), 5_000));
    assert.deepEqual(errors.map((e) => e.code), [], 'nothing was refused: nothing was to be written');
  } finally {
    await small.stop();
    await large.stop();
  }
});
