// A request whose init runs while its session starts closing, on the Redis store: it must not run in a
// session whose close has ended, and must run in one that lives on. The close's end, or a rename, may
// reach this node late (its message held here, as a reconnect loses it).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type RequestLease } from '../src/index.js';
import { eventually } from './helpers.js';
import { HeldMessages, IP, node, stopAll, wrapScript, type Node, type Script, type Vars } from './redis-crossing.js';
import { redisForTest, type RedisForTest } from './redis-support.js';

interface SlowInit<T> {
  readonly r: RedisForTest;
  readonly clock: ManualClock;
  /** The node whose pub/sub messages `held` holds, running the session's requests. */
  readonly x: Node;
  readonly y: Node;
  readonly id: string;
  /** The session's second request, its init waiting for `finishInit`: what `use` made of its lease, or its error's code. */
  readonly second: Promise<T | string | undefined>;
  finishInit(): void;
}

/**
 * Two nodes on one prefix; on x a session whose first request has ended and whose second request (a
 * second process) waits in `init` until `finishInit()`. Stops both nodes after `body`.
 */
async function withSlowSecondInit<T>(t: TestContext, held: HeldMessages, use: (lease: RequestLease<Vars>) => Promise<T>, body: (s: SlowInit<T>) => Promise<void>): Promise<void> {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  let slowInit: Promise<Vars> | undefined;
  let slowInitRuns = false;
  const x = await node(r, clock, { processesPerSession: 2, held, init: () => { if (slowInit !== undefined) slowInitRuns = true; return slowInit ?? {}; } });
  const y = await node(r, clock, { processesPerSession: 2 });
  try {
    const first = await x.engine.acquire({ sessionId: undefined, ip: IP });
    let finishInit!: (vars: Vars) => void;
    slowInit = new Promise((resolve) => { finishInit = resolve; });
    const second = x.engine.acquire({ sessionId: first.sessionId, ip: IP }).then(use, (error: { code?: string }) => error.code);
    // Its init runs (after its enter's reply: a Redis round trip, longer than any fixed wait under load).
    assert.ok(await eventually(() => slowInitRuns, 5_000), 'the second request\'s init runs');
    slowInit = undefined;
    first.release();
    await body({ r, clock, x, y, id: first.sessionId, second, finishInit: () => finishInit({}) });
  } finally {
    await stopAll(clock, [], undefined, x, y);
  }
}

/** The second request's init ends while x's next close claim is on its way to Redis. */
function finishInitDuringClaim(s: SlowInit<unknown>): void {
  wrapScript(s.x.client, 'lwsClaim', (claim: Script) => async (...args) => {
    const claimed = claim(...args);
    s.finishInit();
    await new Promise((resolve) => setTimeout(resolve, 50));
    return claimed;
  });
}

/** Takes a record lock in the request, then ends it. */
async function lockAndEnd(lease: RequestLease<Vars>): Promise<string> {
  const locked = await lease.proc.locks.tryLock('Stock', 7).catch(() => false);
  lease.release();
  return `ran (lock ${String(locked)})`;
}

async function assertNoLockLeft(s: SlowInit<unknown>): Promise<void> {
  const other = await s.y.engine.acquire({ sessionId: undefined, ip: IP });
  assert.equal(await other.proc.locks.lockedBy('Stock', 7), null, 'no lock left by the closed session');
  other.release();
}

test('a live session renamed on another node (the rename not heard here), its init ending while a close from here is being claimed: the request runs in the session, which lives on under its new id', { timeout: 30_000 }, async (t) => {
  const held = new HeldMessages('N ', 'n ');
  await withSlowSecondInit(t, held, async (lease) => lease, async (s) => {
    await new Promise((resolve) => setTimeout(resolve, 50));
    held.on = true;
    const newId = await s.y.engine.regenerate(s.id);
    assert.ok(newId !== null);
    finishInitDuringClaim(s);
    assert.equal(await s.x.engine.closeSession(s.id), false, 'the old id names no session');
    const outcome = await s.second;
    assert.notEqual(typeof outcome, 'string', `the request ran (got ${String(outcome)})`);
    held.deliver();
    assert.equal(await s.r.redis.hget(`${s.r.prefix}s:${newId}`, 'st'), 'o', 'the session lives on');
    if (typeof outcome === 'object') outcome.release();
  });
});

test('a request whose init outlasted a close run on another node, the message that the close ended lost on its way here: it is refused (ERR_SESSION_CLOSED) and leaves no lock', { timeout: 20_000 }, async (t) => {
  const held = new HeldMessages('x ');
  held.on = true; // never delivered: as if lost in a reconnect
  await withSlowSecondInit(t, held, lockAndEnd, async (s) => {
    let closed: boolean | undefined;
    void s.y.engine.closeSession(s.id).then((value) => { closed = value; });
    assert.ok(await eventually(() => { s.clock.advance(1_000); return closed !== undefined; }, 5_000), 'the close on the other node ended without the slow init');
    // The 'x' reaches this node's subscriber on its own connection, maybe after y's close has returned.
    assert.ok(await eventually(() => held.count > 0, 5_000), "this node missed the close's end");
    s.finishInit();
    assert.equal(await s.second, 'ERR_SESSION_CLOSED');
    await assertNoLockLeft(s);
  });
});

test('a session renamed on another node and then closed there (neither heard here), a request of the old id whose init ends while a close from here is claimed: refused (ERR_SESSION_CLOSED), no lock left (the old id\'s forwarding outlives the new id\'s close)', { timeout: 30_000 }, async (t) => {
  const held = new HeldMessages('N ', 'n ', 'x ', 'c ');
  await withSlowSecondInit(t, held, lockAndEnd, async (s) => {
    await new Promise((resolve) => setTimeout(resolve, 50));
    held.on = true;
    const newId = await s.y.engine.regenerate(s.id);
    assert.ok(newId !== null);
    let closed: boolean | undefined;
    void s.y.engine.closeSession(newId).then((value) => { closed = value; });
    assert.ok(await eventually(() => { s.clock.advance(1_000); return closed !== undefined; }, 5_000), 'the new id closed on the other node');
    assert.ok(await s.r.redis.get(`${s.r.prefix}mv:${s.id}`), 'the old id still forwards');
    finishInitDuringClaim(s);
    await s.x.engine.closeSession(s.id);
    assert.equal(await s.second, 'ERR_SESSION_CLOSED');
    await assertNoLockLeft(s);
    held.deliver();
  });
});
