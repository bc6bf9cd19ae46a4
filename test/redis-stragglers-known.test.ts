// Stragglers on the Redis store (see test/redis-stragglers.test.ts): what a node keeps of a session once its
// close has ended (its handles in `known`), and a logout from a request whose session another node is
// closing, handed over to that close: no closed handle left, no lock left, the caller torn down.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type RequestLease, type WebProcess } from '../src/index.js';
import { track } from './engine-harness.js';
import { deferred, eventually, settle } from './helpers.js';
import { SessionHandle } from '../src/redis/node.js';
import { redisForTest } from './redis-support.js';
import { HeldMessages, IP, node, stopAll, wrapScript, type Vars, closingInRedis, settledAsTimePasses } from './redis-crossing.js';

/** The maps a store keeps its handles in (its `known`), found by what they are given. */
function handleMaps(): { maps: Set<Map<unknown, unknown>>; restore(): void } {
  const maps = new Set<Map<unknown, unknown>>();
  const set = Map.prototype.set;
  Map.prototype.set = function (this: Map<unknown, unknown>, key: unknown, value: unknown) {
    if (value instanceof SessionHandle) maps.add(this);
    return set.call(this, key, value);
  } as typeof set;
  return { maps, restore: () => { Map.prototype.set = set; } };
}

/** Counts the answers Redis gave to the node's release calls (a release has landed once it is answered). */
function releaseAnswers(client: Parameters<typeof wrapScript>[0]): { readonly count: number } {
  const answers = { count: 0 };
  wrapScript(client, 'lwsRelease', (release) => async (...args) => { const reply = await release(...args); answers.count++; return reply; });
  return answers;
}

test('a release that finds its renamed session gone (N missed, mv expired) does not tear down the live session\'s other work', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const held = new HeldMessages('N ');
  const x = await node(r, clock, { held, processesPerSession: 3 });
  const y = await node(r, clock, { processesPerSession: 3 });
  const leases: (RequestLease<Vars> | undefined)[] = [];
  const taskGate = deferred();
  let task: WebProcess<Vars> | undefined;
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(a);
    const id = a.sessionId;
    a.proc.spawn('long', async (p) => {
      p.vars.job = 'running';
      await p.locks.tryLock('Stock', 42);
      task = p;
      await taskGate.promise;
    });
    assert.ok(await eventually(() => task !== undefined, 5_000), 'the task runs on x');
    held.on = true; // x misses the rename (pub/sub message lost in a reconnect)
    const newId = await y.engine.regenerate(id);
    assert.ok(newId !== null, 'renamed on y');
    assert.equal(await r.redis.get(`${r.prefix}mv:${id}`), newId, 'forwarding record written (work under way)');
    // The request outlives the forwarding record (its TTL is max(60 s, key lifetime)): expired now.
    await r.redis.pexpire(`${r.prefix}mv:${id}`, 1);
    assert.ok(await eventually(async () => await r.redis.exists(`${r.prefix}mv:${id}`) === 0, 5_000));
    let leftAnswers = 0;
    wrapScript(x.client, 'lwsLeft', (left) => async (...args) => { const reply = await left(...args); leftAnswers++; return reply; });
    a.release(); // its release names the old id: 'gone'; lwsLeft(old) answers 1
    assert.ok(await eventually(() => leftAnswers > 0, 5_000), 'the release asked whether the session left');
    await settle(20);
    const stillOpen = await r.redis.hget(`${r.prefix}s:${newId}`, 'st');
    assert.equal(stillOpen, 'o', 'the session lives on under its new id');
    assert.deepEqual(
      { taskClosed: task!.closed, aborted: task!.signal.aborted, vars: task!.vars, locks: task!.lockCount },
      { taskClosed: false, aborted: false, vars: { job: 'running' }, locks: 1 },
      'a task of the live (renamed) session was torn down on x');
  } finally {
    taskGate.resolve();
    held.deliver();
    // The old release never landed: the process stays busy under the new id until x is taken for dead.
    const stopping = Promise.all([x.engine.stop(), y.engine.stop()]);
    let done = false;
    void stopping.finally(() => { done = true; });
    while (!done) { clock.advance(5_000); await settle(20); }
  }
});

test('a request refused after its init ran across the close (x heard meanwhile) leaves no closed handle in known', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const seen = new HeldMessages();
  const initGate = deferred();
  let gated = false;
  let gatedInits = 0;
  const spy = handleMaps();
  const x = await node(r, clock, { held: seen, processesPerSession: 2, init: async () => { if (gated) { gatedInits++; await initGate.promise; } return {}; } });
  const y = await node(r, clock);
  const leases: (RequestLease<Vars> | undefined)[] = [];
  let closing: ReturnType<typeof track<boolean>> | undefined;
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(a);
    const id = a.sessionId;
    gated = true;
    const entering = track(x.engine.acquire({ sessionId: id, ip: IP })); // second process: no state, init runs
    assert.ok(await eventually(() => gatedInits > 0, 5_000), 'the second process\'s init runs (held)');
    closing = track(y.engine.closeSession(id));
    assert.ok(await settledAsTimePasses(clock, closing!), 'the close gave up and finished');
    assert.ok(await eventually(() => seen.seen.includes(`x ${id}`), 5_000), 'x heard the close end');
    const released = releaseAnswers(x.client);
    a.release();
    assert.ok(await eventually(() => released.count > 0, 5_000), 'the first request\'s release was answered');
    initGate.resolve();
    assert.ok(await eventually(() => entering.settled, 5_000));
    assert.equal((entering.error as { code?: string } | undefined)?.code, 'ERR_SESSION_CLOSED');
    await settle(100);
    const kept = [...spy.maps].filter((m) => m.has(id)).map((m) => (m.get(id) as SessionHandle<Vars>).state);
    assert.deepEqual(kept, [], `closed session ${id} still held in the node's known map`);
  } finally {
    spy.restore();
    initGate.resolve();
    await stopAll(clock, leases, closing, x, y);
  }
});

test('an awaited logout handed over to y\'s close leaves no closed handle in x\'s known once the request ends', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const spy = handleMaps();
  // x learns the close's end from y's 'x' only (its poll for the key would come much later).
  const x = await node(r, clock, { pollIntervalMs: 60_000 });
  const y = await node(r, clock);
  let a: RequestLease<Vars> | undefined;
  let outside: ReturnType<typeof track<boolean>> | undefined;
  try {
    a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    const id = a.sessionId;
    outside = track(y.engine.closeSession(id));
    assert.ok(await closingInRedis(r, id), 'y claimed the close');
    await a.run(() => x.engine.closeSession(x.engine.currentSessionId()));
    assert.ok(a.proc.closed, 'the logout returned with its caller torn down');
    a.release();
    assert.ok(await eventually(() => outside!.settled, 5_000));
    await settle(100);
    const kept = [...spy.maps].filter((m) => m.has(id)).map((m) => (m.get(id) as SessionHandle<Vars>).state);
    assert.deepEqual(kept, [], `closed session ${id} still held in x's known map`);
  } finally {
    spy.restore();
    await stopAll(clock, [a], outside, x, y);
  }
});

test('a logout not awaited, handed over to y\'s close: a lock the request tries to take after y\'s teardown (before x hears x) is refused, and no lock is left', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const held = new HeldMessages('x ');
  // x learns the close's end from y's 'x' only (held here; its poll for the key would come much later).
  const x = await node(r, clock, { held, pollIntervalMs: 60_000 });
  const y = await node(r, clock);
  let a: RequestLease<Vars> | undefined;
  let outside: ReturnType<typeof track<boolean>> | undefined;
  try {
    a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    const id = a.sessionId;
    outside = track(y.engine.closeSession(id));
    assert.ok(await closingInRedis(r, id), 'y claimed the close');
    held.on = true;
    a.run(() => { void x.engine.closeSession(x.engine.currentSessionId()); });
    assert.ok(await eventually(() => outside!.settled, 5_000), 'y\'s close ended (x has not heard its x)');
    assert.equal(await r.redis.exists(`${r.prefix}s:${id}`), 0);
    await assert.rejects(a.proc.locks.tryLock('Stock', 42), { code: 'ERR_SESSION_CLOSED' }, 'the request, still running, cannot take a lock: its process is gone in Redis (fenced)');
    a.release();
    await settle(50);
    held.deliver();
    await settle(100);
    assert.ok(await eventually(async () => (await r.redis.keys(`${r.prefix}lock:*`)).length === 0, 2_000),
      `locks left: ${JSON.stringify(await r.redis.keys(`${r.prefix}lock:*`))}`);
  } finally {
    held.deliver();
    await stopAll(clock, [a], outside, x, y);
  }
});

test('a second logout of the same request (first not awaited), handed over: it too returns with the caller torn down', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const x = await node(r, clock);
  const y = await node(r, clock);
  let a: RequestLease<Vars> | undefined;
  let outside: ReturnType<typeof track<boolean>> | undefined;
  try {
    a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    a.proc.vars.user = 'alice';
    const id = a.sessionId;
    outside = track(y.engine.closeSession(id));
    assert.ok(await closingInRedis(r, id), 'y claimed the close');
    const seen = await a.run(async () => {
      void x.engine.closeSession(x.engine.currentSessionId());
      await x.engine.closeSession(x.engine.currentSessionId());
      return { closed: a!.proc.closed, vars: { ...a!.proc.vars } };
    });
    assert.deepEqual(seen, { closed: true, vars: {} });
  } finally {
    await stopAll(clock, [a], outside, x, y);
  }
});

test('a request refused after its init (session gone) while an outside claim on x is given back: x does not list the closed session', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const yClock = new ManualClock();
  const held = new HeldMessages('c ', 'x '); // lost in a reconnect, say
  const gate = deferred();
  const initStarted = deferred<void>();
  const x = await node(r, clock, { held, init: async () => { initStarted.resolve(); await gate.promise; return { user: 'alice' }; } });
  const y = await node(r, yClock);
  let outside: ReturnType<typeof track<boolean>> | undefined;
  held.on = true;
  try {
    const entering = track(x.engine.acquire({ sessionId: undefined, ip: IP }));
    await initStarted.promise;
    const id = (await r.redis.zrange(`${r.prefix}open`, "0", "-1"))[0]!;
    assert.ok(id !== undefined, 'the new session is open in Redis');
    outside = track(y.engine.closeSession(id));
    assert.ok(await settledAsTimePasses(yClock, outside!), 'y\'s close gave up on the init and ended');
    assert.equal(await r.redis.exists(`${r.prefix}s:${id}`), 0);
    const xClose = track(x.engine.closeSession(id)); // outside, on x: marks the handle closing, claims
    gate.resolve(); // init ends now: its refusal check asks Redis after the claim was sent
    assert.ok(await eventually(() => entering.settled && xClose.settled, 5_000));
    assert.equal((entering.error as { code?: string } | undefined)?.code, 'ERR_SESSION_CLOSED', 'the request was refused');
    assert.equal(xClose.value, false);
    await settle(20);
    const listed = x.engine.sessions().map((s) => s.id);
    assert.ok(!listed.includes(id), `x lists closed session ${id} as open: ${JSON.stringify(listed)}`);
  } finally {
    gate.resolve();
    held.deliver();
    clock.advance(60_000);
    yClock.advance(60_000);
    await Promise.all([x.engine.stop(), y.engine.stop()]);
  }
});
