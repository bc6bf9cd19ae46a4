// What a process's state is after it went through Redis: the structured clone of what the last request
// left. Typed arrays, DataViews and Buffers come back with memory of their own: node:v8 rebuilds them
// as views into the bytes it reads, which Node takes from a pool shared with other sessions' states,
// so `vars.bytes.buffer` held other sessions' vars and ids (and saving it saved them too).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type SessionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { MAX_NESTING } from '../src/redis/state.js';
import { redisForTest, type RedisForTest } from './redis-support.js';

const IP = '127.0.0.1';
type Vars = Record<string, unknown>;

async function withNodes(r: RedisForTest, body: (writer: SessionEngine<Vars>, reader: SessionEngine<Vars>, errors: SessionError[]) => Promise<void>): Promise<void> {
  const errors: SessionError[] = [];
  const node = (): SessionEngine<Vars> => {
    const engine = new SessionEngine<Vars>({ clock: new ManualClock(), store: createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: 20 }) });
    engine.on('error', (error) => errors.push(error));
    return engine;
  };
  const writer = node();
  const reader = node();
  try {
    await body(writer, reader, errors);
  } finally {
    await Promise.all([writer.stop(), reader.stop()]);
  }
}

/** A session made on `engine` whose first request leaves `vars`; resolves its id once the release landed. */
async function sessionWith(r: RedisForTest, engine: SessionEngine<Vars>, vars: Vars): Promise<string> {
  const lease = await engine.acquire({ sessionId: undefined, ip: IP });
  lease.proc.vars = vars;
  const pid = lease.proc.processId;
  lease.release();
  for (let i = 0; i < 500 && (await r.redis.hget(`${r.prefix}s:${lease.sessionId}`, `b:${pid}`)) !== '0'; i++) await new Promise((resolve) => setTimeout(resolve, 5));
  return lease.sessionId;
}

test('Redis store: a typed array, DataView or Buffer in vars comes back with memory of its own, never a view into bytes other sessions\' states share', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  await withNodes(r, async (writer, reader, errors) => {
    const others = [];
    for (let i = 0; i < 5; i++) others.push(await sessionWith(r, writer, { secret: `other-session-secret-${i}` }));
    const id = await sessionWith(r, writer, {
      u8: new Uint8Array([1, 2, 3]),
      f64: new Float64Array([0.5, -0]),
      view: new DataView(new Uint8Array([9, 8]).buffer),
      buf: Buffer.from('abc'),
    });
    for (const node of [reader, writer]) {
      // The other sessions' states read just before, as a busy node does.
      for (const other of others) (await node.acquire({ sessionId: other, ip: IP })).release();
      const lease = await node.acquire({ sessionId: id, ip: IP });
      const vars = lease.proc.vars as { u8: Uint8Array; f64: Float64Array; view: DataView; buf: Buffer };
      lease.release(); // unchanged: what it read is checked below
      for (const [name, view, byteLength] of [['u8', vars.u8, 3], ['f64', vars.f64, 16], ['view', vars.view, 2], ['buf', vars.buf, 3]] as const) {
        assert.deepEqual([view.byteOffset, view.byteLength, view.buffer.byteLength], [0, byteLength, byteLength], `${name}: a buffer of its own`);
      }
      assert.deepEqual([...vars.u8], [1, 2, 3]);
      assert.deepEqual([...vars.f64], [0.5, -0]);
      assert.ok(vars.f64 instanceof Float64Array);
      assert.deepEqual([vars.view.getUint8(0), vars.view.getUint8(1)], [9, 8]);
      assert.ok(Buffer.isBuffer(vars.buf), 'a Buffer stays a Buffer');
      assert.equal(vars.buf.toString(), 'abc');
      assert.ok(!Buffer.from(vars.u8.buffer).toString('latin1').includes('other-session'), 'no other session in it');
    }
    assert.deepEqual(errors, []);
  });
});

/** `{ a: { a: … } }`, `levels` objects deep. */
function nested(levels: number): object {
  let value: object = {};
  for (let i = 1; i < levels; i++) value = { a: value };
  return value;
}

function depthOf(value: unknown): number {
  let depth = 0;
  for (let at = value as { a?: unknown } | undefined; at !== undefined; at = at.a as { a?: unknown } | undefined) depth++;
  return depth;
}

test(`Redis store: vars nested deeper than ${MAX_NESTING} levels are refused at the save (ERR_SESSION_STATE_NOT_STORABLE, the state before kept), never saved unreadable; ${MAX_NESTING - 2} levels read back on another node`, { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  await withNodes(r, async (writer, reader, errors) => {
    // node:v8 writes a 1,500-level object, and its reader overflows the stack on it (from about 2,000).
    const id = await sessionWith(r, writer, { list: nested(MAX_NESTING - 2) });
    const deep = await writer.acquire({ sessionId: id, ip: IP });
    deep.proc.vars = { list: nested(1_500) };
    deep.release();
    for (let i = 0; i < 200 && errors.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 5));
    assert.deepEqual(errors.map((e) => [e.code, e.sessionId]), [['ERR_SESSION_STATE_NOT_STORABLE', id]]);
    assert.match(errors[0]!.message, /nested deeper than 1000 levels/);
    const next = await reader.acquire({ sessionId: id, ip: IP });
    const depth = depthOf((next.proc.vars as { list: unknown }).list);
    next.release();
    assert.equal(depth, MAX_NESTING - 2, 'the state before stands, and reads back');
  });
});

test('Redis store: a request whose state cannot be stored keeps the state before, with the locks it took: the next request\'s held() lists them', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  await withNodes(r, async (writer, reader, errors) => {
    const id = await sessionWith(r, writer, { user: 'ann' });
    const failing = await writer.acquire({ sessionId: id, ip: IP });
    assert.equal(await failing.proc.locks.tryLock('Stock', 9), true);
    failing.proc.vars = { user: 'bob', callback: () => {} };
    failing.release();
    for (let i = 0; i < 200 && errors.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 5));
    assert.deepEqual(errors.map((e) => [e.code, e.sessionId]), [['ERR_SESSION_STATE_NOT_STORABLE', id]]);
    for (const node of [reader, writer]) {
      const next = await node.acquire({ sessionId: id, ip: IP });
      const [vars, held] = [next.proc.vars, next.proc.locks.held()];
      next.release();
      assert.deepEqual(vars, { user: 'ann' }, 'the vars before stand');
      assert.deepEqual(held, [{ table: 'Stock', key: 9 }], 'the lock it took is listed');
    }
  });
});
