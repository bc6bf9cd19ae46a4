// A process's state in Redis that cannot be read back must not wedge its session. Before, the request
// that met one left the process taken in Redis for good (the session never idle again: never timed out
// nor evicted, every later request waiting), and a close retried the same bytes forever. Now the request
// fails with a clear error and the process goes back free with its bytes untouched (never deleted: a
// newer Node's bytes look damaged to an older one, and a node of that version still reads them); a close
// runs without that process's hook, says so, releases its locks and finishes. And whatever this version
// saves must read back: the check of what is read is no stricter than what is written.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { serialize } from 'node:v8';
import { ManualClock, SessionEngine, SessionError, type CloseEvent } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { eventually } from './helpers.js';
import { redisForTest, type RedisForTest } from './redis-support.js';
import { idleInRedis, node, stopAll } from './redis-crossing.js';

const IP = '127.0.0.1';
type Vars = { x?: number };

/** Bytes that are no serialization; a serialization that is no saved process; one whose held lock is no record. */
const DAMAGED = {
  'bytes that are no serialization': Buffer.from('this is not a serialized process'),
  'a serialization that is no saved process': serialize(42),
  'a saved process whose held lock is no record reference': serialize({ v: { x: 1 }, s: [], h: ['stock\u00007'] }),
} as const;
/** The header of a serialization format one version past this Node's, as a newer Node would write. */
const NEWER = ((): Buffer => {
  const bytes = serialize({ v: { x: 1 }, s: [], h: [] });
  bytes[1] = bytes[1]! + 1;
  return bytes;
})();

interface Node {
  readonly engine: SessionEngine<Vars>;
  readonly clock: ManualClock;
  readonly errors: SessionError[];
  readonly hooked: (number | undefined)[];
  readonly closes: CloseEvent[];
}

function nodeOn(r: RedisForTest, init?: () => Vars): Node {
  const clock = new ManualClock();
  const errors: SessionError[] = [];
  const hooked: (number | undefined)[] = [];
  const closes: CloseEvent[] = [];
  const engine = new SessionEngine<Vars>({
    clock,
    // 'keep': the sessions outlive the test's nodes (their keys are deleted with the prefix), so a stop
    // never closes a session whose state it cannot read.
    store: createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: 20, onStop: 'keep' }),
    ...(init === undefined ? {} : { init }),
    onClose: (proc) => { hooked.push(proc.vars?.x); },
  });
  engine.on('error', (error) => errors.push(error));
  engine.on('close', (event) => closes.push(event));
  return { engine, clock, errors, hooked, closes };
}

async function released(r: RedisForTest, key: string, pid: string): Promise<void> {
  assert.ok(await eventually(async () => (await r.redis.hget(key, `b:${pid}`)) === '0'), 'the release landed');
}

/** A session whose only process holds x = 1 and the lock on stock/7, written by `writer`; its state then replaced by `bytes`. */
async function sessionWithState(r: RedisForTest, writer: Node, bytes: Buffer): Promise<{ sessionId: string; pid: string; key: string }> {
  const lease = await writer.engine.acquire({ sessionId: undefined, ip: IP });
  lease.proc.vars = { x: 1 };
  assert.equal(await lease.proc.locks.tryLock('stock', 7), true);
  const { sessionId } = lease;
  const pid = lease.proc.processId;
  lease.release();
  const key = `${r.prefix}s:${sessionId}`;
  await released(r, key, pid);
  await r.redis.hset(key, `d:${pid}`, bytes);
  return { sessionId, pid, key };
}

const unreadable = (error: unknown): boolean => error instanceof SessionError && error.code === 'ERR_SESSION_STATE_UNREADABLE' && error.httpStatus === 500;

async function onTwoNodes(r: RedisForTest, body: (writer: Node, reader: Node) => Promise<void>, init?: () => Vars): Promise<void> {
  const writer = nodeOn(r, init);
  const reader = nodeOn(r, init);
  try {
    await body(writer, reader);
  } finally {
    await Promise.all([writer.engine.stop(), reader.engine.stop()]);
  }
}

const UNREADABLE: readonly (readonly [string, Buffer])[] = [...Object.entries(DAMAGED), ['a state a newer Node wrote', NEWER]];

for (const [what, bytes] of UNREADABLE) {
  test(`Redis store, ${what}: the request fails with ERR_SESSION_STATE_UNREADABLE, the process goes back free with its bytes untouched and its lock kept, and the next request fails the same way at once instead of waiting`, { timeout: 20_000 }, async (t: TestContext) => {
    const r = await redisForTest(t);
    if (r === undefined) return;
    await onTwoNodes(r, async (writer, reader) => {
      const { sessionId, pid, key } = await sessionWithState(r, writer, bytes);
      for (let attempt = 1; attempt <= 2; attempt++) {
        await assert.rejects(reader.engine.acquire({ sessionId, ip: IP }), unreadable);
        await released(r, key, pid);
        const stored = await r.redis.hgetBuffer(key, `d:${pid}`);
        assert.ok(stored !== null && stored.equals(bytes), `attempt ${attempt}: the bytes are left as they were`);
      }
      assert.deepEqual(reader.errors.map((e) => [e.code, e.sessionId]), [['ERR_SESSION_STATE_UNREADABLE', sessionId], ['ERR_SESSION_STATE_UNREADABLE', sessionId]], 'each failure is reported on \'error\'');
      if (bytes === NEWER) assert.match(reader.errors[0]!.message, /newer than this Node's/);
      assert.notEqual(await r.redis.zscore(`${r.prefix}idle`, sessionId), null, 'the session is idle again: it can time out and be evicted');
      assert.notEqual(await reader.engine.lockManager.lockedBy({ table: 'stock', key: 7 }), null, 'its lock is kept: the process lives on');
    });
  });
}

test('Redis store: closing a session whose process state is damaged finishes: that process\'s hook does not run and is reported, its locks are released, the session\'s key goes', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  await onTwoNodes(r, async (writer, closer) => {
    const { sessionId, key } = await sessionWithState(r, writer, DAMAGED['a saved process whose held lock is no record reference']);
    assert.notEqual(await closer.engine.lockManager.lockedBy({ table: 'stock', key: 7 }), null, 'the lock is held before the close');
    assert.equal(await closer.engine.closeSession(sessionId), true);
    assert.deepEqual(closer.hooked, [], 'no hook ran on a context that could not be rebuilt');
    assert.deepEqual(closer.errors.map((e) => [e.code, e.sessionId]), [['ERR_SESSION_STATE_UNREADABLE', sessionId]]);
    assert.deepEqual(closer.closes.map((e) => [e.hooksRun, e.hookFailures]), [[1, 1]], 'the close event counts the hook that could not run');
    assert.equal(await r.redis.exists(key), 0, 'the session\'s key is gone');
    assert.equal(await closer.engine.lockManager.lockedBy({ table: 'stock', key: 7 }), null, 'its lock was released by process id');
  });
});

test('Redis store: a close that meets a state a newer Node wrote finishes too (waiting for a node that can read it would hold the session and its locks for as long as this node lives), and a close with no hook due says nothing', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  await onTwoNodes(r, async (writer, closer) => {
    const { sessionId, key } = await sessionWithState(r, writer, NEWER);
    assert.equal(await closer.engine.closeSession(sessionId), true);
    assert.deepEqual(closer.hooked, []);
    assert.deepEqual(closer.errors.map((e) => e.code), ['ERR_SESSION_STATE_UNREADABLE']);
    assert.equal(await r.redis.exists(key), 0);
    assert.equal(await closer.engine.lockManager.lockedBy({ table: 'stock', key: 7 }), null);
  });
  // No onClose at all: nothing was due, so nothing is reported; the locks still go.
  const writer = nodeOn(r);
  const quiet = new SessionEngine<Vars>({ clock: new ManualClock(), store: createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: 20, onStop: 'keep' }) });
  const errors: SessionError[] = [];
  quiet.on('error', (error) => errors.push(error));
  try {
    const { sessionId, key } = await sessionWithState(r, writer, DAMAGED['bytes that are no serialization']);
    assert.equal(await quiet.closeSession(sessionId), true);
    assert.deepEqual(errors, []);
    assert.equal(await r.redis.exists(key), 0);
    assert.equal(await quiet.lockManager.lockedBy({ table: 'stock', key: 7 }), null);
  } finally {
    await Promise.all([writer.engine.stop(), quiet.stop()]);
  }
});

test('Redis store: whatever this version saves reads back on another node (vars undefined or a Map, selection keys and positions as the application set them)', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  await onTwoNodes(r, async (writer, reader) => {
    for (const vars of [undefined as unknown as Vars, new Map([['x', 1]]) as unknown as Vars]) {
      const first = await writer.engine.acquire({ sessionId: undefined, ip: IP });
      first.proc.vars = vars;
      const selection = first.proc.selections.set('stock', new Int32Array([3, 1, 2]) as unknown as number[]);
      (selection as { position: unknown }).position = '2';
      const pid = first.proc.processId;
      first.release();
      await released(r, `${r.prefix}s:${first.sessionId}`, pid);
      const again = await reader.engine.acquire({ sessionId: first.sessionId, ip: IP });
      assert.deepEqual(again.proc.vars, vars);
      assert.deepEqual([...again.proc.selections.get('stock')!.keys], [3, 1, 2]);
      assert.equal(again.proc.selections.get('stock')!.position, '2');
      again.release();
    }
    assert.deepEqual(reader.errors, []);
  });
});

test('Redis store: requests waiting behind one that meets an unreadable state do not hang: each fails the same way in turn; the wait queue ends empty', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  await onTwoNodes(r, async (writer, reader) => {
    for (const bytes of [DAMAGED['bytes that are no serialization'], NEWER]) {
      const expected = Array(4).fill('ERR_SESSION_STATE_UNREADABLE');
      const { sessionId, pid, key } = await sessionWithState(r, writer, bytes);
      // Four at once on one node: the first enters, the others queue behind it.
      const outcomes = await Promise.all([1, 2, 3, 4].map(() => reader.engine.acquire({ sessionId, ip: IP }).then((lease) => {
        const x = lease.proc.vars.x;
        lease.release();
        return x;
      }, (error: unknown) => (error as SessionError).code)));
      assert.deepEqual([...outcomes].sort(), [...expected].sort());
      assert.ok(await eventually(async () => (await r.redis.zcard(`${r.prefix}wq:${sessionId}`)) === 0), 'nobody is left counted as waiting');
      await released(r, key, pid);
      // The kept process keeps its lock; the next round's session needs it free.
      await writer.engine.lockManager.releaseAll({ sessionId, processId: pid }, []);
    }
  }, () => ({ x: 100 }));
});

test('a state saved by an earlier version, holding a lock on a record key this version no longer lets a process take (NaN), still reads back: the session goes on with its vars', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const x = await node(r, clock);
  const y = await node(r, clock);
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    a.proc.vars.n = 1;
    const id = a.sessionId;
    const pid = a.proc.processId;
    a.release();
    assert.ok(await idleInRedis(r, id));
    await r.redis.hset(`${r.prefix}s:${id}`, `d:${pid}`, serialize({ v: { n: 1 }, s: [], h: [{ table: 'T', key: Number.NaN }] }));
    const b = await y.engine.acquire({ sessionId: id, ip: IP });
    assert.equal(b.proc.vars.n, 1);
    b.release();
  } finally {
    await stopAll(clock, [], undefined, x, y);
  }
});
