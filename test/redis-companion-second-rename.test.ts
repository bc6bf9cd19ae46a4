// A companion handle (a request whose session was regenerated on another node while it ran, the new id
// seen on this node first) goes on under the session's id. When the session is regenerated a second time,
// the companion's request must follow that rename too (docs/redis.md: what a node runs in a renamed session
// goes on under the new id: its release, a logout, its cookie), like the primary handle does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../src/index.js';
import { eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { HeldMessages, IP, node, runAsCompanion, stopAll } from './redis-crossing.js';

test('a companion\'s request follows a second rename: its session id (cookie) is the newest id, and its logout closes the session (true)', { timeout: 30_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const held = new HeldMessages('N ', 'n ');
  const x = await node(r, clock, { held, processesPerSession: 2 });
  const y = await node(r, clock, { processesPerSession: 2 });
  let a: Awaited<ReturnType<typeof x.engine.acquire>> | undefined;
  try {
    a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    const running = a;
    const { newId: firstId } = await runAsCompanion(r, x, y, held, a.sessionId);
    assert.ok(await eventually(() => running.sessionId === firstId, 5_000), 'x hears of the first rename (the request runs as a companion)');
    // The session is regenerated again; x hears of it at once.
    const secondId = (await y.engine.regenerate(firstId))!;
    assert.ok(await eventually(() => held.seen.includes(`N ${firstId} ${secondId}`), 5_000), 'x heard the second rename');
    assert.ok(await eventually(() => x.engine.sessions().some((s) => s.id === secondId), 5_000), "the new id's handle moved");
    assert.equal(running.sessionId, secondId, "the companion's request follows the second rename (else its cookie names a dead id)");
    const loggedOut = await running.run(() => x.engine.closeSession(x.engine.currentSessionId()));
    assert.equal(loggedOut, true, 'the logout from the companion\'s request closes its session');
    assert.equal(await r.redis.exists(`${r.prefix}s:${secondId}`), 0, 'the session is closed in Redis');
    running.release();
    a = undefined;
  } finally {
    held.deliver();
    await stopAll(clock, [a], undefined, x, y);
  }
});

test('a companion\'s request follows a second rename it is told of only by the logout\'s claim (moved): the logout closes the session', { timeout: 30_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const held = new HeldMessages('N ', 'n ');
  const x = await node(r, clock, { held, processesPerSession: 2 });
  const y = await node(r, clock, { processesPerSession: 2 });
  let a: Awaited<ReturnType<typeof x.engine.acquire>> | undefined;
  const closing = { settled: false };
  try {
    a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    const running = a;
    const { newId: firstId } = await runAsCompanion(r, x, y, held, a.sessionId);
    assert.ok(await eventually(() => running.sessionId === firstId, 5_000), 'x hears of the first rename (the request runs as a companion)');
    // Regenerated again; x does not hear of it before the logout.
    held.on = true;
    const secondId = (await y.engine.regenerate(firstId))!;
    assert.ok(await eventually(() => held.count > 0, 5_000));
    const logout = running.run(() => x.engine.closeSession(x.engine.currentSessionId())).finally(() => { closing.settled = true; });
    // No clock movement: a logout from inside never waits for its own request.
    assert.ok(await eventually(() => closing.settled, 5_000), 'the logout returns without waiting for closeTimeoutMs');
    assert.equal(await logout, true, 'the logout closes the session');
    assert.equal(await r.redis.exists(`${r.prefix}s:${secondId}`), 0, 'the session is closed in Redis');
    running.release();
    a = undefined;
  } finally {
    held.deliver();
    await stopAll(clock, [a], closing, x, y);
  }
});

test('a companion\'s request that regenerates its own session gets the new id for its cookie', { timeout: 30_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const held = new HeldMessages('N ', 'n ');
  const x = await node(r, clock, { held, processesPerSession: 2 });
  const y = await node(r, clock, { processesPerSession: 2 });
  let a: Awaited<ReturnType<typeof x.engine.acquire>> | undefined;
  try {
    a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    const running = a;
    const { newId: firstId } = await runAsCompanion(r, x, y, held, a.sessionId);
    assert.ok(await eventually(() => running.sessionId === firstId, 5_000), 'x hears of the first rename (the request runs as a companion)');
    const secondId = await running.run(() => x.engine.regenerate(x.engine.currentSessionId()));
    assert.equal(typeof secondId, 'string');
    assert.equal(running.sessionId, secondId, 'the request\'s cookie names the id its regenerate gave');
    running.release();
    a = undefined;
    const c = await x.engine.acquire({ sessionId: secondId!, ip: IP });
    assert.equal(c.sessionId, secondId, 'the session lives under that id');
    c.release();
  } finally {
    held.deliver();
    await stopAll(clock, [a], undefined, x, y);
  }
});
