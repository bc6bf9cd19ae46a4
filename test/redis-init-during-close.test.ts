// A request whose init runs while its session starts closing, on the Redis store: it must not run in a
// session whose close has ended, and must run in one that lives on. The close's end, or a rename, may
// reach this node late (its message held here, as a reconnect loses it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../src/index.js';
import { eventually } from './helpers.js';
import { HeldMessages, IP, node, stopAll, wrapScript, type Script, type Vars } from './redis-crossing.js';
import { redisForTest } from './redis-support.js';

test('a live session renamed on another node (the rename not heard here), its init ending while a close from here is being claimed: the request runs in the session, which lives on under its new id', { timeout: 30_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  let slowInit: Promise<Vars> | undefined;
  const held = new HeldMessages('N ', 'n ');
  const x = await node(r, clock, { processesPerSession: 2, held, init: () => slowInit ?? {} });
  const y = await node(r, clock, { processesPerSession: 2 });
  try {
    const first = await x.engine.acquire({ sessionId: undefined, ip: IP });
    const id = first.sessionId;
    let finishInit!: (vars: Vars) => void;
    slowInit = new Promise((resolve) => { finishInit = resolve; });
    const second = x.engine.acquire({ sessionId: id, ip: IP }).then((lease) => lease, (error: { code?: string }) => error.code);
    await new Promise((resolve) => setTimeout(resolve, 50));
    slowInit = undefined;
    first.release();
    await new Promise((resolve) => setTimeout(resolve, 50));
    held.on = true;
    const newId = await y.engine.regenerate(id);
    assert.ok(newId !== null);
    wrapScript(x.client, 'lwsClaim', (claim: Script) => async (...args) => {
      const claimed = claim(...args);
      finishInit({});
      await new Promise((resolve) => setTimeout(resolve, 50));
      return claimed;
    });
    assert.equal(await x.engine.closeSession(id), false, 'the old id names no session');
    const outcome = await second;
    assert.notEqual(typeof outcome, 'string', `the request ran (got ${String(outcome)})`);
    held.deliver();
    assert.equal(await r.redis.hget(`${r.prefix}s:${newId}`, 'st'), 'o', 'the session lives on');
    if (typeof outcome === 'object') outcome.release();
  } finally {
    await stopAll(clock, [], undefined, x, y);
  }
});

test('a request whose init outlasted a close run on another node, the message that the close ended lost on its way here: it is refused (ERR_SESSION_CLOSED) and leaves no lock', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  let slowInit: Promise<Vars> | undefined;
  const held = new HeldMessages('x ');
  held.on = true; // never delivered: as if lost in a reconnect
  const x = await node(r, clock, { processesPerSession: 2, held, init: () => slowInit ?? {} });
  const y = await node(r, clock);
  try {
    const first = await x.engine.acquire({ sessionId: undefined, ip: IP });
    const id = first.sessionId;
    let finishInit!: (vars: Vars) => void;
    slowInit = new Promise((resolve) => { finishInit = resolve; });
    const second = x.engine.acquire({ sessionId: id, ip: IP }).then(async (lease) => {
      const locked = await lease.proc.locks.tryLock('Stock', 7).catch(() => false);
      lease.release();
      return `ran (lock ${String(locked)})`;
    }, (error: { code?: string }) => error.code);
    await new Promise((resolve) => setTimeout(resolve, 50));
    slowInit = undefined;
    first.release();
    let closed: boolean | undefined;
    void y.engine.closeSession(id).then((value) => { closed = value; });
    assert.ok(await eventually(() => { clock.advance(1_000); return closed !== undefined; }, 5_000), 'the close on the other node ended without the slow init');
    assert.ok(held.count > 0, "this node missed the close's end");
    finishInit({});
    assert.equal(await second, 'ERR_SESSION_CLOSED');
    const other = await y.engine.acquire({ sessionId: undefined, ip: IP });
    assert.equal(await other.proc.locks.lockedBy('Stock', 7), null, 'no lock left by the closed session');
    other.release();
  } finally {
    await stopAll(clock, [], undefined, x, y);
  }
});

test('a session renamed on another node and then closed there (neither heard here), a request of the old id whose init ends while a close from here is claimed: refused (ERR_SESSION_CLOSED), no lock left (the old id\'s forwarding outlives the new id\'s close)', { timeout: 30_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  let slowInit: Promise<Vars> | undefined;
  const held = new HeldMessages('N ', 'n ', 'x ', 'c ');
  const x = await node(r, clock, { processesPerSession: 2, held, init: () => slowInit ?? {} });
  const y = await node(r, clock, { processesPerSession: 2 });
  try {
    const first = await x.engine.acquire({ sessionId: undefined, ip: IP });
    const id = first.sessionId;
    let finishInit!: (vars: Vars) => void;
    slowInit = new Promise((resolve) => { finishInit = resolve; });
    const second = x.engine.acquire({ sessionId: id, ip: IP }).then(async (lease) => {
      const locked = await lease.proc.locks.tryLock('Stock', 7);
      lease.release();
      return `ran (lock ${String(locked)})`;
    }, (error: { code?: string }) => error.code);
    await new Promise((resolve) => setTimeout(resolve, 50));
    slowInit = undefined;
    first.release();
    await new Promise((resolve) => setTimeout(resolve, 50));
    held.on = true;
    const newId = await y.engine.regenerate(id);
    assert.ok(newId !== null);
    let closed: boolean | undefined;
    void y.engine.closeSession(newId).then((value) => { closed = value; });
    assert.ok(await eventually(() => { clock.advance(1_000); return closed !== undefined; }, 5_000), 'the new id closed on the other node');
    assert.ok(await r.redis.get(`${r.prefix}mv:${id}`), 'the old id still forwards');
    wrapScript(x.client, 'lwsClaim', (claim: Script) => async (...args) => {
      const claimed = claim(...args);
      finishInit({});
      await new Promise((resolve) => setTimeout(resolve, 50));
      return claimed;
    });
    await x.engine.closeSession(id);
    assert.equal(await second, 'ERR_SESSION_CLOSED');
    const other = await y.engine.acquire({ sessionId: undefined, ip: IP });
    assert.equal(await other.proc.locks.lockedBy('Stock', 7), null);
    other.release();
    held.deliver();
  } finally {
    await stopAll(clock, [], undefined, x, y);
  }
});
