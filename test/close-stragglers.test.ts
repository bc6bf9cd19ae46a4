// A request or task a close stopped waiting for (closeTimeoutMs), on the node that runs the close: the
// same on both stores. Its hook sees it live (what its request wrote, the locks it holds), and once the
// close promise resolves it is torn down (vars reset, lock calls refused), also when the node learns of
// the close's end other than by its own 'x' message (a join that polled, a message delayed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine } from '../src/index.js';
import { track } from './engine-harness.js';
import { eventually } from './helpers.js';
import { storeChoices } from './store-choices.js';
import { HeldMessages, IP, node, stopAll, type Vars } from './redis-crossing.js';
import { redisForTest } from './redis-support.js';

for (const [name, choose] of storeChoices()) {
  test(`${name}: once closeSession resolved on the node that ran the close, its straggler request is torn down and cannot lock`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const engine = new SessionEngine<Vars>({ clock, closeTimeoutMs: 10_000, ...choice.options });
    const a = await engine.acquire({ sessionId: undefined, ip: IP });
    a.proc.vars.user = 'alice';
    // What the straggler is when the close promise resolves (its continuation, not a later poll).
    const closing = track(engine.closeSession(a.sessionId).then(async () => {
      const seen = { closed: a.proc.closed, vars: { ...a.proc.vars } };
      const lock = await a.proc.locks.tryLock('Stock', 42).catch((e: { code?: string }) => e.code);
      return { ...seen, lock };
    }));
    try {
      assert.ok(await eventually(() => { clock.advance(2_000); return closing.settled; }, 5_000), 'the close gave up on the request and finished');
      assert.deepEqual(closing.value, { closed: true, vars: {}, lock: 'ERR_SESSION_CLOSED' });
    } finally {
      a.release();
      clock.advance(60_000);
      await engine.stop();
    }
  });
}

test('Redis store: the closing node\'s own x delayed (pub/sub): the straggler of the close it ran is torn down once closeSession resolved, and cannot lock', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const held = new HeldMessages('x ');
  const x = await node(r, clock, { held });
  const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
  let closing: ReturnType<typeof track<boolean>> | undefined;
  try {
    a.proc.vars.user = 'alice';
    held.on = true;
    closing = track(x.engine.closeSession(a.sessionId));
    assert.ok(await eventually(() => { clock.advance(2_000); return closing!.settled; }, 5_000), 'the close gave up on the request and finished');
    const lock = await a.proc.locks.tryLock('Stock', 42).catch((e: { code?: string }) => e.code);
    assert.deepEqual({ closed: a.proc.closed, vars: a.proc.vars, lock }, { closed: true, vars: {}, lock: 'ERR_SESSION_CLOSED' },
      `closeSession resolved on the node that ran it; lock key ${JSON.stringify(await r.redis.hgetall(`${r.prefix}lock:5:Stock:number:42`))}`);
  } finally {
    held.deliver();
    await stopAll(clock, [a], closing, x);
  }
});

test('Redis store: closeSession on x joins y\'s close (its x lost): once it resolves on x, x\'s straggler of that session is torn down', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const held = new HeldMessages('x ');
  const x = await node(r, clock, { held });
  const y = await node(r, clock);
  const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
  let closing: ReturnType<typeof track<boolean>> | undefined;
  let joined: ReturnType<typeof track<unknown>> | undefined;
  try {
    a.proc.vars.user = 'alice';
    held.on = true;
    closing = track(y.engine.closeSession(a.sessionId));
    assert.ok(await eventually(async () => (await r.redis.hget(`${r.prefix}s:${a.sessionId}`, 'st')) === 'c', 5_000), 'y claimed the close');
    joined = track(x.engine.closeSession(a.sessionId).then(async () => {
      const lock = await a.proc.locks.tryLock('Stock', 42).catch((e: { code?: string }) => e.code);
      return { closed: a.proc.closed, vars: { ...a.proc.vars }, lock };
    }));
    assert.ok(await eventually(() => { clock.advance(2_000); return joined!.settled; }, 5_000), 'x\'s closeSession resolved');
    assert.deepEqual(joined.value, { closed: true, vars: {}, lock: 'ERR_SESSION_CLOSED' });
  } finally {
    held.deliver();
    await stopAll(clock, [a], closing, x, y);
  }
});

for (const [name, choose] of storeChoices()) {
  test(`${name}: onClose of a straggler request on the node running the close sees what the request wrote and the locks it holds`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const seen: unknown[] = [];
    const engine = new SessionEngine<Vars>({ clock, closeTimeoutMs: 10_000, ...choice.options,
      onClose: (proc) => { seen.push({ vars: { ...proc.vars }, locks: proc.locks.held().length }); } });
    const first = await engine.acquire({ sessionId: undefined, ip: IP });
    first.proc.vars.cart = 1;
    first.release(); // the next request gets the process once this release has landed
    const a = await engine.acquire({ sessionId: first.sessionId, ip: IP });
    a.proc.vars.cart = 3;
    assert.equal(await a.proc.locks.tryLock('Stock', 42), true);
    const closing = track(engine.closeSession(a.sessionId));
    try {
      assert.ok(await eventually(() => { clock.advance(2_000); return closing.settled; }, 5_000), 'the close gave up on the request and finished');
      assert.deepEqual(seen, [{ vars: { cart: 3 }, locks: 1 }]);
    } finally {
      a.release();
      clock.advance(60_000);
      await engine.stop();
    }
  });
}
