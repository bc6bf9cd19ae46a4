// A process's state in Redis that cannot be read back must not wedge its session. Before, the request
// that met one left the process taken in Redis for good (the session never idle again: never timed out
// nor evicted, every later request waiting), and a close retried the same bytes forever. Two kinds:
// damaged bytes, which no node can read (the process leaves the session, its locks released, and the
// next request starts afresh), and bytes a newer Node wrote during a rolling upgrade, which a node of
// that version can read (left untouched; a close waits for such a node). And whatever this version
// saves must read back: the check of what is read is no stricter than what is written.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { serialize } from 'node:v8';
import { ManualClock, SessionEngine, SessionError, type CloseEvent } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { eventually } from './helpers.js';
import { redisForTest, type RedisForTest } from './redis-support.js';

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

/**
 * Stops a node whose close is still retrying: a stop gives such closes closeTimeoutMs (on the engine's
 * clock, a ManualClock here) and then leaves them to the other nodes.
 */
async function stopGivingUp(node: Node): Promise<void> {
  let stopped = false;
  const stopping = node.engine.stop().finally(() => { stopped = true; });
  assert.ok(await eventually(async () => {
    node.clock.advance(node.engine.getOption('closeTimeoutMs') as number);
    return stopped;
  }), 'the stop gave up on the close and ended');
  await stopping;
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

for (const [what, bytes] of Object.entries(DAMAGED)) {
  test(`Redis store, ${what}: the request fails with ERR_SESSION_STATE_UNREADABLE, the damaged process leaves the session with its locks, and the next request runs in a fresh process of the same session`, { timeout: 20_000 }, async (t: TestContext) => {
    const r = await redisForTest(t);
    if (r === undefined) return;
    await onTwoNodes(r, async (writer, reader) => {
      const { sessionId, pid, key } = await sessionWithState(r, writer, bytes);
      await assert.rejects(reader.engine.acquire({ sessionId, ip: IP }), unreadable);
      assert.deepEqual(reader.errors.map((e) => [e.code, e.sessionId]), [['ERR_SESSION_STATE_UNREADABLE', sessionId]], 'reported on \'error\'');
      assert.ok(await eventually(async () => (await r.redis.hget(key, `b:${pid}`)) === null), 'the damaged process left the session');
      assert.equal(await r.redis.hget(key, `d:${pid}`), null, 'its bytes went with it');
      assert.ok(await eventually(async () => (await reader.engine.lockManager.lockedBy({ table: 'stock', key: 7 })) === null), 'its lock was released by process id');

      const next = await reader.engine.acquire({ sessionId, ip: IP });
      assert.equal(next.sessionId, sessionId, 'the same session');
      assert.notEqual(next.proc.processId, pid, 'in a new process');
      assert.equal(next.proc.vars?.x, 100, 'started from init');
      next.release();
    }, () => ({ x: 100 }));
  });
}

test('Redis store, a state a newer Node wrote: the request fails with ERR_SESSION_STATE_UNREADABLE saying so, the process goes back free with its bytes untouched (a node of that version can read them), and the next request fails the same way at once instead of waiting', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  await onTwoNodes(r, async (writer, reader) => {
    const { sessionId, pid, key } = await sessionWithState(r, writer, NEWER);
    for (let attempt = 1; attempt <= 2; attempt++) {
      await assert.rejects(reader.engine.acquire({ sessionId, ip: IP }), unreadable);
      await released(r, key, pid);
      const stored = await r.redis.hgetBuffer(key, `d:${pid}`);
      assert.ok(stored !== null && stored.equals(NEWER), `attempt ${attempt}: the bytes are left as they were`);
    }
    assert.equal(reader.errors.length, 2);
    assert.match(reader.errors[0]!.message, /newer than this Node's/);
    assert.notEqual(await reader.engine.lockManager.lockedBy({ table: 'stock', key: 7 }), null, 'its lock is still held: the process lives on');
  });
});

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

test('Redis store: a close that meets a state a newer Node wrote does not skip its hook: it stays claimed, unhooked, its bytes kept, for a node that can read them (this one gives up when it stops)', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  await onTwoNodes(r, async (writer, closer) => {
    const { sessionId, pid, key } = await sessionWithState(r, writer, NEWER);
    await assert.rejects(closer.engine.closeSession(sessionId), unreadable, 'the caller hears why its close did not finish');
    assert.deepEqual(closer.errors.map((e) => e.code), ['ERR_SESSION_STATE_UNREADABLE'], 'reported once');
    // The pipeline goes on retrying in the background (as after a Redis error), meeting the same bytes.
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(await r.redis.hget(key, 'st'), 'c', 'the close stays claimed');
    assert.equal(await r.redis.hget(key, `hk:${pid}`), null, 'its hook is not marked done');
    const stored = await r.redis.hgetBuffer(key, `d:${pid}`);
    assert.ok(stored !== null && stored.equals(NEWER), 'its state is kept');
    assert.deepEqual(closer.hooked, []);
    assert.deepEqual(closer.closes, [], 'no close event');
    await stopGivingUp(closer);
  });
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

test('Redis store: requests waiting behind one that meets an unreadable state do not hang: behind damaged bytes they run in the fresh process, behind a newer Node\'s bytes each fails the same way; the wait queue ends empty', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  await onTwoNodes(r, async (writer, reader) => {
    for (const [bytes, expected] of [[DAMAGED['bytes that are no serialization'], ['ERR_SESSION_STATE_UNREADABLE', 100, 100, 100]], [NEWER, Array(4).fill('ERR_SESSION_STATE_UNREADABLE')]] as const) {
      const { sessionId, pid, key } = await sessionWithState(r, writer, bytes);
      // Four at once on one node: the first enters, the others queue behind it.
      const outcomes = await Promise.all([1, 2, 3, 4].map(() => reader.engine.acquire({ sessionId, ip: IP }).then((lease) => {
        const x = lease.proc.vars.x;
        lease.release();
        return x;
      }, (error: unknown) => (error as SessionError).code)));
      assert.deepEqual([...outcomes].sort(), [...expected].sort());
      assert.ok(await eventually(async () => (await r.redis.zcard(`${r.prefix}wq:${sessionId}`)) === 0), 'nobody is left counted as waiting');
      if (bytes === NEWER) await released(r, key, pid);
      // The newer Node's state keeps its lock (its process lives on); the next session needs it free.
      if (bytes === NEWER) await writer.engine.lockManager.releaseAll({ sessionId, processId: pid }, []);
    }
  }, () => ({ x: 100 }));
});
