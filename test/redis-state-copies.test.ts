// A node keeps a copy of the states it wrote last: a returning visitor on that node brings no state from
// Redis as long as nobody entered the session since, and a request that changes nothing writes no
// state. What Redis holds is tampered with here (without moving the session's fencing counter) so the
// tests can see which of the two a request started from.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { deserialize, serialize } from 'node:v8';
import { ManualClock, SessionEngine } from '../src/index.js';
import { createRedisStore, type RedisStoreOptions } from '../src/redis/index.js';
import { StateCopies } from '../src/redis/state-copies.js';
import { eventually } from './helpers.js';
import { redisForTest, type RedisForTest } from './redis-support.js';

const IP = '127.0.0.1';
type Vars = { x?: number; u?: Uint8Array };

function engineOn(r: RedisForTest, options: Partial<RedisStoreOptions> = {}): SessionEngine<Vars> {
  return new SessionEngine<Vars>({ clock: new ManualClock(), store: createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: 20, ...options }) });
}

/** Two nodes on the test's prefix, stopped after `body` whatever it does. */
async function onTwoNodes(r: RedisForTest, body: (here: SessionEngine<Vars>, elsewhere: SessionEngine<Vars>) => Promise<void>): Promise<void> {
  const here = engineOn(r);
  const elsewhere = engineOn(r);
  try {
    await body(here, elsewhere);
  } finally {
    await Promise.all([here.stop(), elsewhere.stop()]);
  }
}

/** One request on `engine`: `body` may change the vars; resolves once its release has landed in Redis. */
async function visit(r: RedisForTest, engine: SessionEngine<Vars>, sessionId: string | undefined, body: (vars: Vars) => void = () => {}): Promise<{ sessionId: string; seen: number | undefined; pid: string }> {
  const lease = await engine.acquire({ sessionId, ip: IP });
  const seen = lease.proc.vars.x;
  body(lease.proc.vars);
  const pid = lease.proc.processId;
  lease.release();
  const key = `${r.prefix}s:${lease.sessionId}`;
  assert.ok(await eventually(async () => (await r.redis.hget(key, `b:${pid}`)) === '0'), 'the release landed');
  return { sessionId: lease.sessionId, seen, pid };
}

/** The state Redis holds for the process, replaced by one with `x` (the fencing counter is left alone). */
async function tamper(r: RedisForTest, sessionId: string, pid: string, x: number): Promise<Buffer> {
  const bytes = serialize({ v: { x }, s: [], h: [] });
  await r.redis.hset(`${r.prefix}s:${sessionId}`, `d:${pid}`, bytes);
  return bytes;
}

test('Redis store: a returning visitor on the node that wrote its state last starts from that node\'s copy; a request that changes nothing writes no state; once another node entered the session, the state comes from Redis again', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  await onTwoNodes(r, async (here, elsewhere) => {
    const { sessionId, pid } = await visit(r, here, undefined, (vars) => { vars.x = 1; });
    const tampered = await tamper(r, sessionId, pid, 99);

    const second = await visit(r, here, sessionId);
    assert.equal(second.seen, 1, 'from the copy: Redis was not asked for the state');
    const stored = await r.redis.hgetBuffer(`${r.prefix}s:${sessionId}`, `d:${pid}`);
    assert.ok(stored !== null && stored.equals(tampered), 'a request that changed nothing wrote no state');

    const third = await visit(r, elsewhere, sessionId, (vars) => { vars.x = 5; });
    assert.equal(third.seen, 99, 'another node has no copy: it reads Redis');
    const fourth = await visit(r, here, sessionId);
    assert.equal(fourth.seen, 5, 'the other node entered since: the copy is not exact any more, Redis is read');

    // A changed state is written, and the copy follows it.
    await visit(r, here, sessionId, (vars) => { vars.x = 6; });
    await tamper(r, sessionId, pid, 98);
    assert.equal((await visit(r, here, sessionId)).seen, 6);
    assert.equal((await visit(r, elsewhere, sessionId)).seen, 98);
  });
});

/** The `x` Redis holds for the process. */
async function storedX(r: RedisForTest, sessionId: string, pid: string): Promise<number | undefined> {
  const bytes = await r.redis.hgetBuffer(`${r.prefix}s:${sessionId}`, `d:${pid}`);
  return bytes === null ? undefined : (deserialize(bytes) as { v: Vars }).v.x;
}

test('Redis store: a typed array changed in place is a change (written, seen by the other node), and changing it after the request ended reaches neither Redis nor the node\'s next request', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  await onTwoNodes(r, async (here, elsewhere) => {
    const { sessionId } = await visit(r, here, undefined, (vars) => { vars.u = new Uint8Array(4); });
    let kept: Vars | undefined;
    await visit(r, here, sessionId, (vars) => { vars.u![0] = 7; kept = vars; });
    kept!.u![1] = 9; // a timer of that request, after it ended: outside any request, never stored
    // Each request is released before anything is asserted, so a failure cannot leave a stop waiting.
    const again = await here.acquire({ sessionId, ip: IP });
    const seenHere = [...again.proc.vars.u!];
    again.release();
    await visit(r, here, sessionId);
    const other = await elsewhere.acquire({ sessionId, ip: IP });
    const seenElsewhere = [...other.proc.vars.u!];
    other.release();
    assert.deepEqual(seenHere, [7, 0, 0, 0], 'this node: the change in place, not the later one');
    assert.deepEqual(seenElsewhere, [7, 0, 0, 0], 'the other node reads the change from Redis');
  });
});

test('Redis store: a release fenced off (its process freed meanwhile, as a sweep frees a node thought dead) leaves no copy: the next request starts from what Redis holds', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const engine = engineOn(r);
  try {
    const { sessionId, pid } = await visit(r, engine, undefined, (vars) => { vars.x = 1; });
    const lease = await engine.acquire({ sessionId, ip: IP });
    lease.proc.vars.x = 2;
    // What the dead-node sweep does to the process of a node it takes for dead: freed, tk left alone.
    await r.redis.hset(`${r.prefix}s:${sessionId}`, `b:${pid}`, '0');
    lease.release(); // fenced off: its token no longer holds, it writes nothing
    const next = await engine.acquire({ sessionId, ip: IP }); // the browser's next request, before that release's reply
    const seen = next.proc.vars.x;
    next.release();
    assert.equal(seen, 1, 'what Redis holds, not the state of the release that was fenced off');
    assert.ok(await eventually(async () => (await r.redis.hget(`${r.prefix}s:${sessionId}`, `b:${pid}`)) === '0'));
    assert.equal(await storedX(r, sessionId, pid), 1);
    assert.equal((await visit(r, engine, sessionId)).seen, 1);
  } finally {
    await engine.stop();
  }
});

test('Redis store: a session regenerated on another node keeps this node\'s copy under its new id (the rename moves the fencing counter with the session)', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  await onTwoNodes(r, async (here, elsewhere) => {
    const { sessionId, pid } = await visit(r, here, undefined, (vars) => { vars.x = 1; });
    const newId = await elsewhere.regenerate(sessionId);
    assert.ok(newId !== null);
    // This node hears of the rename by pub/sub (its handle then answers for the new id, without a
    // request: a request would make a copy of its own); its copy moves then.
    assert.ok(await eventually(() => here.sessionExpiration(newId) !== null), 'the rename reached this node');
    await tamper(r, newId, pid, 99);
    assert.equal((await visit(r, here, newId)).seen, 1, 'from the copy, under the new id');
    assert.equal((await visit(r, elsewhere, newId)).seen, 99, 'the other node reads Redis');
  });
});

test('Redis store: stateCopyBytes 0 keeps no copies (every enter reads the state from Redis), and the option is validated', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const engine = engineOn(r, { stateCopyBytes: 0 });
  try {
    const { sessionId, pid } = await visit(r, engine, undefined, (vars) => { vars.x = 1; });
    await tamper(r, sessionId, pid, 99);
    assert.equal((await visit(r, engine, sessionId)).seen, 99);
  } finally {
    await engine.stop();
  }
  for (const bad of [-1, 1.5, '16', Number.NaN, 2 ** 60]) {
    assert.throws(() => createRedisStore({ url: r.url, prefix: r.prefix, stateCopyBytes: bad as number }), /stateCopyBytes must be an integer >= 0/);
  }
});

test('StateCopies: one copy per session within the byte budget, the one written longest ago dropped first; a drop by token leaves a later copy', () => {
  const overhead = 160; // what each copy costs beyond its bytes
  const copies = new StateCopies(3 * (100 + overhead));
  const copy = (token: string, size = 100) => ({ pid: 'r1', token, bytes: Buffer.alloc(size) });
  copies.set('a', copy('1'));
  copies.set('b', copy('1'));
  copies.set('c', copy('1'));
  copies.set('a', copy('2')); // written again: the newest now
  copies.set('d', copy('1'));
  assert.equal(copies.get('b'), undefined, 'b was written longest ago');
  assert.deepEqual(['a', 'c', 'd'].map((id) => copies.get(id)?.token), ['2', '1', '1']);
  assert.equal(copies.usedBytes, 3 * (100 + overhead));

  copies.drop('a', '1');
  assert.equal(copies.get('a')?.token, '2', 'a drop for an earlier token leaves the later copy');
  copies.drop('a', '2');
  assert.equal(copies.get('a'), undefined);
  copies.set('huge', copy('1', 10_000));
  assert.equal(copies.get('huge'), undefined, 'a copy larger than the whole budget is not kept');
  assert.equal(copies.size, 2);
  assert.equal(copies.usedBytes, 2 * (100 + overhead));
});
