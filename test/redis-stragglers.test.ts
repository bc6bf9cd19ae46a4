// Work of a Redis session that goes on on a node after the session's close ended elsewhere (a request
// or task the close stopped waiting for at closeTimeoutMs, or one whose enter or spawn reply is read
// only after the close ended) is torn down there as the memory store's close tears down its stragglers:
// vars reset, record locks released (retried as any teardown's), lock calls refused; a process the
// close tore down already (an insider's logout) is left alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { ManualClock, SessionEngine, type RequestLease, type SessionEngineOptions, type WebProcess } from '../src/index.js';
import { track } from './engine-harness.js';
import { deferred, eventually, settle } from './helpers.js';
import { SessionHandle } from '../src/redis/node.js';
import { createRedisStore } from '../src/redis/index.js';
import { redisForTest, type RedisForTest } from './redis-support.js';
import { HeldMessages, holdEnterReplies, idleInRedis, IP, node, sessionKeys, stopAll, wrapScript, type Vars, closingInRedis, settledAsTimePasses } from './redis-crossing.js';

const RECORD = { table: 'Stock', key: 42 };

/** One node on Redis whose hook is `onClose` (its errors not collected), for the stop() tests below. */
async function engineOnRedis(r: RedisForTest, clock: ManualClock, onClose: NonNullable<SessionEngineOptions<Vars>['onClose']>): Promise<{ engine: SessionEngine<Vars>; client: Awaited<ReturnType<RedisForTest['client']>> }> {
  const client = await r.client();
  const engine = new SessionEngine<Vars>({
    clock, closeTimeoutMs: 10_000, processesPerSession: 1, onClose,
    store: createRedisStore({ redis: client, prefix: r.prefix, pollIntervalMs: 5, sweepIntervalMs: 1_000, onStop: 'keep' }),
  });
  engine.on('error', () => {});
  return { engine, client };
}

test('a straggler torn down on x whose lock release fails once (Redis blip) still has its lock freed (retried, or by its release)', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const held = new HeldMessages('x ');
  const x = await node(r, clock, { held });
  const y = await node(r, clock);
  const leases: (RequestLease<Vars> | undefined)[] = [];
  let closing: ReturnType<typeof track<boolean>> | undefined;
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(a);
    const id = a.sessionId;
    held.on = true;
    closing = track(y.engine.closeSession(id));
    assert.ok(await settledAsTimePasses(clock, closing!), 'the close gave up on the request and finished');
    assert.equal(await a.proc.locks.tryLock(RECORD.table, RECORD.key), true, 'the straggler takes the record after FINISH');
    let failures = 0;
    wrapScript(x.client, 'lwsLockReleaseAll', (original) => async (...args) => {
      if (failures++ === 0) throw new Error('injected: connection reset');
      return original(...args);
    });
    held.deliver();
    assert.ok(await eventually(() => a.proc.closed, 5_000), 'torn down on x');
    a.release(); // the request ends too: its release finds the session gone
    const b = await y.engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(b);
    const freed = await eventually(() => b.proc.locks.tryLock(RECORD.table, RECORD.key), 3_000);
    const holder = await r.redis.hgetall(`${r.prefix}lock:5:Stock:number:42`);
    assert.ok(freed, `the closed session ${id} still holds the record (failed release tries: ${failures}; x errors: ${x.errors.map((e) => e.code).join(', ')}; lock key ttl ${await r.redis.pttl(`${r.prefix}lock:5:Stock:number:42`)} ms, holder ${JSON.stringify(holder)})`);
  } finally {
    held.deliver();
    await stopAll(clock, leases, closing, x, y);
  }
});

/** A logout from inside, then a write the page renders afterwards, read back once `meanwhile` is over. */
async function logoutThenWrite(engine: SessionEngine<Vars>, lease: RequestLease<Vars>, meanwhile: (id: string) => Promise<unknown>): Promise<unknown> {
  return lease.run(async () => {
    const id = engine.currentSessionId();
    await engine.closeSession(id);
    lease.proc.vars.flash = 'bye';
    await meanwhile(id);
    return lease.proc.vars.flash;
  });
}

test('memory store, for comparison: after a logout from inside, the handler reads back what it wrote', { timeout: 10_000 }, async () => {
  const engine = new SessionEngine<Vars>({});
  const lease = await engine.acquire({ sessionId: undefined, ip: IP });
  assert.equal(await logoutThenWrite(engine, lease, () => settle(20)), 'bye');
  lease.release();
  await engine.stop();
});

test('Redis store: after a logout from inside, the handler reads back what it wrote, also once its node heard the close end (the close tore it down once, x does not again)', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const seen = new HeldMessages();
  const x = await node(r, clock, { held: seen });
  const lease = await x.engine.acquire({ sessionId: undefined, ip: IP });
  try {
    assert.equal(await logoutThenWrite(x.engine, lease, (id) => eventually(() => seen.seen.includes(`x ${id}`), 5_000)), 'bye');
  } finally {
    await stopAll(clock, [lease], undefined, x);
  }
});

test('an enter reply read after its node heard the close end (x): the request does not run as a live process of the closed session', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const seen = new HeldMessages();
  const x = await node(r, clock, { held: seen });
  const y = await node(r, clock);
  const leases: (RequestLease<Vars> | undefined)[] = [];
  let closing: ReturnType<typeof track<boolean>> | undefined;
  try {
    const first = await x.engine.acquire({ sessionId: undefined, ip: IP });
    first.proc.vars.login = 'alice';
    first.release();
    const id = first.sessionId;
    assert.ok(await idleInRedis(r, id));
    const hold = holdEnterReplies(x.client);
    const entering = track(x.engine.acquire({ sessionId: id, ip: IP }));
    await hold.sent; // Redis ran the enter: the process is busy
    closing = track(y.engine.closeSession(id));
    assert.ok(await settledAsTimePasses(clock, closing!), 'the close gave up on the request and finished');
    assert.ok(await eventually(() => seen.seen.includes(`x ${id}`), 5_000), 'x heard the close end');
    hold.deliver();
    assert.ok(await eventually(() => entering.settled, 5_000));
    if (entering.error !== undefined) {
      assert.equal((entering.error as { code?: string }).code, 'ERR_SESSION_CLOSED');
      return;
    }
    const b = entering.value!;
    leases.push(b);
    const lockTaken = await b.proc.locks.tryLock(RECORD.table, RECORD.key).catch((e: { code?: string }) => e.code);
    assert.notEqual(lockTaken, true,
      `the request runs live in closed session ${id}: vars ${JSON.stringify(b.proc.vars)}, closed ${b.proc.closed}, signal aborted ${b.proc.signal.aborted}, cookie ${b.cookie().action}, lock taken ${lockTaken} (TTL ${await r.redis.pttl(`${r.prefix}lock:5:Stock:number:42`)} ms)`);
  } finally {
    await stopAll(clock, leases, closing, x, y);
  }
});

test('a spawn reply read after its node heard the close end (x): the task does not run as a live process of the closed session', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const seen = new HeldMessages();
  const x = await node(r, clock, { held: seen });
  const y = await node(r, clock);
  const leases: (RequestLease<Vars> | undefined)[] = [];
  let closing: ReturnType<typeof track<boolean>> | undefined;
  const replyGate = deferred();
  const taskGate = deferred();
  try {
    const sent = deferred();
    wrapScript(x.client, 'lwsSpawn', (spawn) => async (...args) => {
      const reply = await spawn(...args);
      sent.resolve();
      await replyGate.promise;
      return reply;
    });
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(a);
    const id = a.sessionId;
    let taskProc: WebProcess<Vars> | undefined;
    let lockTaken: unknown;
    a.proc.spawn('bg', async (p) => {
      taskProc = p;
      lockTaken = await p.locks.tryLock(RECORD.table, RECORD.key).catch((e: { code?: string }) => e.code);
      await taskGate.promise;
    });
    await sent.promise; // Redis registered the task's process (busy)
    a.release();
    closing = track(y.engine.closeSession(id));
    assert.ok(await settledAsTimePasses(clock, closing!), 'the close gave up on the task and finished');
    assert.ok(await eventually(() => seen.seen.includes(`x ${id}`), 5_000), 'x heard the close end');
    replyGate.resolve();
    // The task never runs (test/redis-late-spawn.test.ts): its refusal is reported; were it to run, it must not lock.
    assert.ok(await eventually(() => lockTaken !== undefined || x.errors.some((e) => e.code === 'ERR_SESSION_TASK_FAILED'), 5_000), 'the task ran or was refused');
    await settle(10);
    assert.notEqual(lockTaken, true,
      `the task runs live in closed session ${id}: closed ${taskProc?.closed}, signal aborted ${taskProc?.signal.aborted}, lock taken ${lockTaken} (TTL ${await r.redis.pttl(`${r.prefix}lock:5:Stock:number:42`)} ms)`);
  } finally {
    replyGate.resolve();
    taskGate.resolve();
    await stopAll(clock, leases, closing, x, y);
  }
});

test('a straggler task and request torn down on x end quietly (no state, no error, nothing left)', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const held = new HeldMessages('x ');
  const x = await node(r, clock, { held, processesPerSession: 2 });
  const y = await node(r, clock);
  const leases: (RequestLease<Vars> | undefined)[] = [];
  let closing: ReturnType<typeof track<boolean>> | undefined;
  const taskGate = deferred();
  let taskProc: WebProcess<Vars> | undefined;
  let after: unknown = 'unset';
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(a);
    const id = a.sessionId;
    a.proc.spawn('bg', async (p) => { taskProc = p; await taskGate.promise; p.vars = { late: 1 } as Vars; after = await p.locks.tryLock('T', 1).catch((e: { code?: string }) => e.code); });
    assert.ok(await eventually(() => taskProc !== undefined, 5_000));
    held.on = true;
    closing = track(y.engine.closeSession(id));
    assert.ok(await settledAsTimePasses(clock, closing!));
    await a.proc.locks.tryLock('R', 1);
    await taskProc!.locks.tryLock('T', 2);
    held.deliver();
    assert.ok(await eventually(() => a.proc.closed && taskProc!.closed, 5_000));
    a.proc.vars.late = 2;
    a.release();
    taskGate.resolve();
    assert.ok(await eventually(() => after !== 'unset', 5_000));
    assert.equal(after, 'ERR_SESSION_CLOSED');
    await settle(20);
    assert.ok(await eventually(async () => (await r.redis.keys(`${r.prefix}lock:*`)).length === 0, 3_000), 'no lock left');
    assert.deepEqual(await sessionKeys(r), []);
    assert.deepEqual(x.errors.map((e) => e.code), [], 'nothing reported: no state written, nothing counted twice');
  } finally {
    taskGate.resolve();
    held.deliver();
    await stopAll(clock, leases, closing, x, y);
  }
});

test('an enter reply read after x: the request\'s process is torn down after its state is restored, so the closed session\'s context never comes back over it', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const seen = new HeldMessages();
  const x = await node(r, clock, { held: seen });
  const y = await node(r, clock);
  const leases: (RequestLease<Vars> | undefined)[] = [];
  let closing: ReturnType<typeof track<boolean>> | undefined;
  try {
    const first = await x.engine.acquire({ sessionId: undefined, ip: IP });
    first.proc.vars.login = 'alice';
    await first.proc.locks.tryLock('Stock', 42);
    first.release();
    const id = first.sessionId;
    assert.ok(await idleInRedis(r, id));
    const hold = holdEnterReplies(x.client);
    const entering = track(x.engine.acquire({ sessionId: id, ip: IP }));
    await hold.sent;
    closing = track(y.engine.closeSession(id));
    assert.ok(await settledAsTimePasses(clock, closing!));
    assert.ok(await eventually(() => seen.seen.includes(`x ${id}`), 5_000));
    hold.deliver();
    assert.ok(await eventually(() => entering.settled, 5_000));
    if (entering.error !== undefined) return; // refused: fine
    const b = entering.value!;
    leases.push(b);
    assert.deepEqual({ closed: b.proc.closed, vars: b.proc.vars, held: b.proc.locks.held().length },
      { closed: true, vars: {}, held: 0 }, 'a straggler of a finished close must not see the old context');
  } finally {
    await stopAll(clock, leases, closing, x, y);
  }
});

test('a late enter reply for a close this node no longer remembers (4,096 closes later): once its release finds the session gone, the node lists it open no more', { timeout: 30_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const seen = new HeldMessages();
  const x = await node(r, clock, { held: seen });
  const y = await node(r, clock);
  const leases: (RequestLease<Vars> | undefined)[] = [];
  let closing: ReturnType<typeof track<boolean>> | undefined;
  try {
    const first = await x.engine.acquire({ sessionId: undefined, ip: IP });
    first.proc.vars.login = 'alice';
    first.release();
    const id = first.sessionId;
    assert.ok(await idleInRedis(r, id));
    const hold = holdEnterReplies(x.client);
    const entering = track(x.engine.acquire({ sessionId: id, ip: IP }));
    await hold.sent;
    closing = track(y.engine.closeSession(id));
    assert.ok(await settledAsTimePasses(clock, closing!));
    assert.ok(await eventually(() => seen.seen.includes(`x ${id}`), 5_000));
    // 4,096 other closes heard since (a busy cluster: evictions, timeouts).
    const pipe = r.redis.pipeline();
    for (let i = 0; i < 4_100; i++) pipe.publish(`${r.prefix}ev`, `x ${randomUUID()}`);
    await pipe.exec();
    assert.ok(await eventually(() => seen.seen.length >= 4_100, 10_000));
    hold.deliver();
    assert.ok(await eventually(() => entering.settled, 5_000));
    if (entering.error !== undefined) return;
    const b = entering.value!;
    leases.push(b);
    const report = { closed: b.proc.closed, vars: b.proc.vars, cookie: b.cookie().action };
    b.release();
    // Its release (a round trip), then lwsLeft (another): polled, not a count of turns.
    await eventually(() => x.engine.sessionExpiration(id) === null, 5_000);
    const listed = x.engine.sessions().map((s) => s.id).includes(id);
    assert.deepEqual({ listed, count: x.engine.sessionProcessCount(id), expires: x.engine.sessionExpiration(id) },
      { listed: false, count: 0, expires: null }, `closed session ${id} still seen as open on x after its straggler ended (while it ran: ${JSON.stringify(report)})`);
  } finally {
    await stopAll(clock, leases, closing, x, y);
  }
});

test('stop() waits for a request of this node torn down on x (its handler still running)', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const held = new HeldMessages('x ');
  const x = await node(r, clock, { held, onStop: 'keep' });
  const y = await node(r, clock);
  const leases: (RequestLease<Vars> | undefined)[] = [];
  let closing: ReturnType<typeof track<boolean>> | undefined;
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(a);
    held.on = true;
    closing = track(y.engine.closeSession(a.sessionId));
    assert.ok(await settledAsTimePasses(clock, closing!));
    held.deliver();
    assert.ok(await eventually(() => a.proc.closed, 5_000), 'torn down on x');
    const stopping = track(x.engine.stop());
    await settle(200);
    const stoppedEarly = stopping.settled;
    a.release();
    await settle(200);
    assert.deepEqual({ stoppedEarly, errors: x.errors.map((e) => `${e.code}: ${e.message}`) }, { stoppedEarly: false, errors: [] },
      'stop() returned while a request of this node still ran');
  } finally {
    await stopAll(clock, leases, closing, x, y);
  }
});

test('a close heard during stop()\'s heartbeat is not undone on the handle (onStop auto, others alive)', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const held = new HeldMessages('c ', 'x ');
  const x = await node(r, clock, { held, onStop: 'auto' });
  const leases: (RequestLease<Vars> | undefined)[] = [];
  let closing: ReturnType<typeof track<boolean>> | undefined;
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP }); // x started alone: it saw no other node
    leases.push(a);
    const y = await node(r, clock);
    await y.engine.acquire({ sessionId: undefined, ip: IP }).then((l) => l.release()); // y has joined
    held.on = true;
    closing = track(y.engine.closeSession(a.sessionId));
    assert.ok(await settledAsTimePasses(clock, closing!));
    wrapScript(x.client, 'lwsHeartbeat', (beat) => async (...args) => { held.deliver(); return beat(...args); });
    const stopping = track(x.engine.stop());
    await settle(100);
    const state = { closed: a.proc.closed, cookie: a.cookie().action };
    a.release();
    assert.ok(await eventually(() => stopping.settled, 5_000));
    await y.engine.stop();
    assert.deepEqual(state, { closed: true, cookie: 'clear' }, 'the closed session\'s straggler response sets its dead cookie again');
  } finally {
    await stopAll(clock, leases, closing, x);
  }
});

test('a close claimed (c) during stop()\'s heartbeat is not undone on the handle (onStop auto, others alive)', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const held = new HeldMessages('c ');
  const x = await node(r, clock, { held, onStop: 'auto' });
  const leases: (RequestLease<Vars> | undefined)[] = [];
  let closing: ReturnType<typeof track<boolean>> | undefined;
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP }); // x started alone: it saw no other node
    leases.push(a);
    const y = await node(r, clock);
    await y.engine.acquire({ sessionId: undefined, ip: IP }).then((l) => l.release()); // y has joined
    held.on = true;
    closing = track(y.engine.closeSession(a.sessionId));
    assert.ok(await closingInRedis(r, a.sessionId));
    wrapScript(x.client, 'lwsHeartbeat', (beat) => async (...args) => { held.deliver(); return beat(...args); });
    const stopping = track(x.engine.stop());
    await settle(100);
    const state = { cookie: a.cookie().action };
    a.release();
    assert.ok(await eventually(() => closing!.settled, 5_000));
    assert.ok(await eventually(() => stopping.settled, 5_000));
    await y.engine.stop();
    assert.deepEqual(state, { cookie: 'clear' }, 'the closed session\'s straggler response sets its dead cookie again');
  } finally {
    await stopAll(clock, leases, closing, x);
  }
});

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
  const spy = handleMaps();
  const x = await node(r, clock, { held: seen, processesPerSession: 2, init: async () => { if (gated) await initGate.promise; return {}; } });
  const y = await node(r, clock);
  const leases: (RequestLease<Vars> | undefined)[] = [];
  let closing: ReturnType<typeof track<boolean>> | undefined;
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(a);
    const id = a.sessionId;
    gated = true;
    const entering = track(x.engine.acquire({ sessionId: id, ip: IP })); // second process: no state, init runs
    await settle(50);
    closing = track(y.engine.closeSession(id));
    assert.ok(await settledAsTimePasses(clock, closing!), 'the close gave up and finished');
    assert.ok(await eventually(() => seen.seen.includes(`x ${id}`), 5_000), 'x heard the close end');
    a.release();
    await settle(50);
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

test('stop() still waits for a straggler torn down on x after a second straggler\'s enter reply of that session is read', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const seen = new HeldMessages();
  const x = await node(r, clock, { held: seen, processesPerSession: 2, onStop: 'keep' });
  const y = await node(r, clock);
  const leases: (RequestLease<Vars> | undefined)[] = [];
  let closing: ReturnType<typeof track<boolean>> | undefined;
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(a);
    const id = a.sessionId;
    const hold = holdEnterReplies(x.client);
    const entering = track(x.engine.acquire({ sessionId: id, ip: IP }));
    await hold.sent; // Redis ran the enter before the claim: its process is busy
    closing = track(y.engine.closeSession(id));
    assert.ok(await settledAsTimePasses(clock, closing!), 'the close gave up and finished');
    assert.ok(await eventually(() => seen.seen.includes(`x ${id}`), 5_000), 'x heard the close end');
    assert.ok(await eventually(() => a.proc.closed, 5_000), 'a torn down on x (its handle kept: a still runs)');
    hold.deliver();
    assert.ok(await eventually(() => entering.settled, 5_000));
    entering.value?.release();
    await settle(50);
    const stopping = track(x.engine.stop());
    await settle(200);
    const stoppedEarly = stopping.settled;
    a.release();
    await settle(200);
    assert.equal(stoppedEarly, false, 'stop() returned while a request of this node still ran');
  } finally {
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

test('a logout not awaited, handed over to y\'s close: a lock the request takes after y\'s teardown (before x hears x) is freed', { timeout: 20_000 }, async (t) => {
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
    assert.equal(await a.proc.locks.tryLock('Stock', 42), true, 'the request, still running, takes a lock');
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

test('stop() on x (its store\'s own client, from url) while a handed-over logout waits for y\'s close: the logout returns', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const yClock = new ManualClock();
  // x as an application makes it: the store connects (and, at stop, quits) a client of its own.
  const xEngine = new SessionEngine<Vars>({ clock, closeTimeoutMs: 10_000, processesPerSession: 2, store: createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: 5, sweepIntervalMs: 1_000, onStop: 'keep' }) });
  xEngine.on('error', () => {});
  const y = await node(r, yClock, { processesPerSession: 2, onStop: 'keep' });
  let a: RequestLease<Vars> | undefined;
  let b: RequestLease<Vars> | undefined;
  let outside: ReturnType<typeof track<boolean>> | undefined;
  try {
    a = await xEngine.acquire({ sessionId: undefined, ip: IP });
    const id = a.sessionId;
    b = await y.engine.acquire({ sessionId: id, ip: IP }); // a second process, busy on y: y's drain waits for it
    outside = track(y.engine.closeSession(id));
    assert.ok(await closingInRedis(r, id), 'y claimed the close');
    const logout = track(a.run(() => xEngine.closeSession(xEngine.currentSessionId())));
    await settle(50);
    assert.equal(logout.settled, false, 'the logout waits for y\'s close');
    const stopping = track(xEngine.stop());
    assert.ok(await eventually(() => { clock.advance(5_000); return stopping.settled; }, 5_000), 'x stopped');
    b.release();
    assert.ok(await eventually(() => outside!.settled, 5_000), 'y\'s close ended');
    assert.ok(await eventually(() => logout.settled, 3_000), 'the logout on the stopped node never returned (its handler hangs)');
  } finally {
    b?.release();
    a?.release();
    yClock.advance(60_000);
    clock.advance(60_000);
    await y.engine.stop();
    await xEngine.stop();
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

test('x stops while a handed-over request\'s end waits for y\'s close (x missed its x): the lock the request took after y\'s teardown is freed before x\'s stop resolves', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const held = new HeldMessages('x ');
  const x = await node(r, clock, { held, pollIntervalMs: 1_000, onStop: 'keep' });
  const y = await node(r, clock, { onStop: 'keep' });
  let a: RequestLease<Vars> | undefined;
  let outside: ReturnType<typeof track<boolean>> | undefined;
  try {
    a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    const id = a.sessionId;
    outside = track(y.engine.closeSession(id));
    assert.ok(await closingInRedis(r, id), 'y claimed the close');
    held.on = true;
    a.run(() => { void x.engine.closeSession(x.engine.currentSessionId()); }); // handed over
    assert.ok(await eventually(() => outside!.settled, 5_000), 'y\'s close ended (x has not heard its x)');
    assert.equal(await a.proc.locks.tryLock('Stock', 42), true, 'the request, still running, takes a lock after y\'s teardown');
    a.release();
    await settle(5);
    await x.engine.stop();
    const errorsAtStop = x.errors.length;
    await x.client.quit(); // the application quits its client once stop() has resolved
    await new Promise((resolve) => setTimeout(resolve, 1_500)); // x's poll would have been due
    const locks = await r.redis.keys(`${r.prefix}lock:*`);
    assert.deepEqual(locks, [], `lock left after x stopped; x errors after its stop: ${x.errors.slice(errorsAtStop).map((e) => `${e.code} ${e.message}`).join('; ')}`);
  } finally {
    held.deliver();
    a?.release();
    await y.engine.stop();
  }
});

test('an outside closeSession on x joining y\'s close does not resolve true before that close has ended, x stopped meanwhile', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const yClock = new ManualClock();
  const x = await node(r, clock, { onStop: 'keep', processesPerSession: 2 });
  const y = await node(r, yClock, { onStop: 'keep', processesPerSession: 2 });
  let b: RequestLease<Vars> | undefined;
  let outside: ReturnType<typeof track<boolean>> | undefined;
  try {
    const first = await x.engine.acquire({ sessionId: undefined, ip: IP });
    const id = first.sessionId;
    first.release();
    b = await y.engine.acquire({ sessionId: id, ip: IP }); // busy on y: y's drain waits for it
    outside = track(y.engine.closeSession(id));
    assert.ok(await closingInRedis(r, id), 'y claimed the close');
    const joined = track(x.engine.closeSession(id)); // an admin call on x, outside any request
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(joined.settled, false, 'the join waits for y\'s close');
    const stopping = track(x.engine.stop());
    await eventually(() => joined.settled, 500);
    const keyLeft = await r.redis.exists(`${r.prefix}s:${id}`);
    assert.ok(!(joined.settled && joined.value === true && keyLeft === 1),
      `closeSession resolved ${String(joined.value)} while y's close is still under way (key st=${await r.redis.hget(`${r.prefix}s:${id}`, 'st')}; x stopped: ${stopping.settled})`);
    b.release();
    assert.ok(await eventually(() => outside!.settled && joined.settled, 5_000), 'y\'s close ended, the join returned');
    assert.equal(joined.value, true);
    assert.ok(await eventually(() => stopping.settled, 5_000), 'x stopped once the join returned');
  } finally {
    b?.release();
    yClock.advance(60_000);
    clock.advance(60_000);
    await y.engine.stop();
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

test('a closeSession on x made together with x.stop(), joining y\'s close, does not resolve true before that close has ended', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const yClock = new ManualClock();
  const x = await node(r, clock, { onStop: 'keep', processesPerSession: 2 });
  const y = await node(r, yClock, { onStop: 'keep', processesPerSession: 2 });
  let b: RequestLease<Vars> | undefined;
  let outside: ReturnType<typeof track<boolean>> | undefined;
  try {
    const first = await x.engine.acquire({ sessionId: undefined, ip: IP });
    const id = first.sessionId;
    first.release();
    b = await y.engine.acquire({ sessionId: id, ip: IP }); // busy on y: y's drain waits for it
    outside = track(y.engine.closeSession(id));
    assert.ok(await closingInRedis(r, id), 'y claimed the close');
    // An admin shutdown script: closes a session and stops the node, concurrently.
    const stopping = track(x.engine.stop());
    const joined = track(x.engine.closeSession(id));
    await eventually(() => joined.settled, 500);
    const keyLeft = await r.redis.exists(`${r.prefix}s:${id}`);
    assert.ok(!(joined.settled && joined.value === true && keyLeft === 1),
      `closeSession resolved ${String(joined.value)} while y's close is still under way (x stopped: ${stopping.settled})`);
    b.release();
    assert.ok(await eventually(() => outside!.settled && joined.settled, 5_000), 'y\'s close ended, then the join returned');
    assert.equal(joined.value, true);
  } finally {
    b?.release();
    yClock.advance(60_000);
    clock.advance(60_000);
    await y.engine.stop();
    await x.engine.stop();
  }
});

test('stop() from the hook of a close x runs returns, while another closeSession of that session on x waits for it', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  let stopFromHook: ReturnType<typeof track<void>> | undefined;
  const { engine }: { engine: SessionEngine<Vars> } = await engineOnRedis(r, clock, async () => { const stopping = engine.stop(); stopFromHook = track(stopping); await stopping; });
  try {
    const a = await engine.acquire({ sessionId: undefined, ip: IP });
    const id = a.sessionId;
    a.release();
    assert.ok(await idleInRedis(r, id), 'its release landed');
    // An admin call and a logout of the same session, together: the first claim wins ('ok'), the second
    // is answered 'closing' and waits for the close (this node's own) to end.
    const first = track(engine.closeSession(id));
    const second = track(engine.closeSession(id));
    assert.ok(await eventually(() => stopFromHook !== undefined, 5_000), 'the hook ran and called stop()');
    const stopped = await eventually(() => stopFromHook!.settled, 2_000);
    assert.ok(stopped, `stop() from the hook still waiting (first settled ${first.settled}, second settled ${second.settled}; key left: ${await r.redis.exists(`${r.prefix}s:${id}`)})`);
  } finally {
    clock.advance(60_000);
    await engine.stop();
  }
});

test('stop() from the hook of x\'s close returns while a request handed over to that very close has ended', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  let stopFromHook: ReturnType<typeof track<void>> | undefined;
  const { engine }: { engine: SessionEngine<Vars> } = await engineOnRedis(r, clock, async () => { await new Promise((resolve) => setTimeout(resolve, 100)); const stopping = engine.stop(); stopFromHook = track(stopping); await stopping; });
  try {
    const a = await engine.acquire({ sessionId: undefined, ip: IP });
    const id = a.sessionId;
    const outside = track(engine.closeSession(id)); // claim sent first: 'ok'
    let logout: ReturnType<typeof track<boolean>> | undefined;
    a.run(() => { logout = track(engine.closeSession(engine.currentSessionId())); }); // answered 'closing'
    await new Promise((resolve) => setTimeout(resolve, 50));
    a.release();
    assert.ok(await eventually(() => stopFromHook !== undefined, 5_000), 'the hook ran and called stop()');
    const stopped = await eventually(() => stopFromHook!.settled, 2_000);
    assert.ok(stopped, `stop() from the hook still waiting (outside settled ${outside.settled}, logout settled ${logout?.settled}; key left: ${await r.redis.exists(`${r.prefix}s:${id}`)})`);
  } finally {
    clock.advance(60_000);
    await engine.stop();
  }
});

test('stop() waits for the close a closeSession claimed during the stop (reply read after settle() looked)', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const hooked: string[] = [];
  const { engine, client } = await engineOnRedis(r, clock, async (proc) => { await new Promise((resolve) => setTimeout(resolve, 200)); hooked.push(proc.processId); });
  try {
    const a = await engine.acquire({ sessionId: undefined, ip: IP });
    const id = a.sessionId;
    a.release();
    assert.ok(await idleInRedis(r, id), 'its release landed');
    const reply = deferred();
    const sent = deferred();
    wrapScript(client, 'lwsClaim', (claim) => async (...args) => { const answer = await claim(...args); sent.resolve(); await reply.promise; return answer; });
    const closing = track(engine.closeSession(id));
    await sent.promise; // claimed in Redis ('ok'), reply held
    const stopping = track(engine.stop());
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(stopping.settled, false, 'the stop waits for the claim in flight');
    reply.resolve();
    assert.ok(await eventually(() => stopping.settled, 5_000), 'stop resolved');
    const state = `closeSession settled ${closing.settled} (${String(closing.value)}, ${String((closing.error as Error | undefined)?.message)}), hooks ${hooked.length}, key left ${await r.redis.exists(`${r.prefix}s:${id}`)}`;
    assert.ok(closing.settled && closing.value === true && hooked.length === 1, `stop() resolved before the close it let this node claim had ended: ${state}`);
  } finally {
    clock.advance(60_000);
    await engine.stop();
  }
});

test('stop() from the hook of a close the repair runs returns, while a closeSession answered \'closing\' (this node\'s claim, reply lost) waits for it', { timeout: 30_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  let stopFromHook: ReturnType<typeof track<void>> | undefined;
  const { engine, client } = await engineOnRedis(r, clock, async () => { const stopping = engine.stop(); stopFromHook = track(stopping); await stopping; });
  try {
    const a = await engine.acquire({ sessionId: undefined, ip: IP });
    const id = a.sessionId;
    a.release();
    assert.ok(await idleInRedis(r, id), 'its release landed');
    // The first claim lands in Redis, its reply is lost: this node holds the claim, runs no close yet.
    let lose = true;
    wrapScript(client, 'lwsClaim', (claim) => async (...args) => { const answer = await claim(...args); if (lose) { lose = false; throw new Error('connection lost'); } return answer; });
    const first = track(engine.closeSession(id));
    assert.ok(await eventually(() => first.settled, 2_000) && first.error !== undefined, 'the first closeSession failed (reply lost)');
    // Answered 'closing' (this node's own claim), no pipeline here: a join of "another node's" close.
    const second = track(engine.closeSession(id));
    await new Promise((resolve) => setTimeout(resolve, 50));
    clock.advance(1_000); // the sweep repairs: runs the close this node claimed
    assert.ok(await eventually(() => stopFromHook !== undefined, 5_000), 'the hook ran and called stop()');
    const stopped = await eventually(() => stopFromHook!.settled, 2_000);
    assert.ok(stopped, `stop() from the hook still waiting (second settled ${second.settled}; key left: ${await r.redis.exists(`${r.prefix}s:${id}`)})`);
  } finally {
    clock.advance(60_000);
    await engine.stop();
  }
});
