// Work of a Redis session that goes on on a node after the session's close ended elsewhere (a request
// or task the close stopped waiting for at closeTimeoutMs, or one whose enter or spawn reply is read
// only after the close ended) is torn down there as the memory store's close tears down its stragglers:
// vars reset, record locks released (retried as any teardown's), lock calls refused; a process the
// close tore down already (an insider's logout) is left alone.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { ManualClock, SessionEngine, type RequestLease, type WebProcess } from '../src/index.js';
import { track } from './engine-harness.js';
import { deferred, eventually, settle } from './helpers.js';
import { redisForTest, type RedisForTest } from './redis-support.js';
import { HeldMessages, holdEnterReplies, idleInRedis, IP, node, sessionKeys, stopAll, wrapScript, type Vars, settledAsTimePasses } from './redis-crossing.js';

const RECORD = { table: 'Stock', key: 42 };

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
    // Refused in Redis since lock calls are fenced by the process token (run-locks.ts): nothing to free then.
    await assert.rejects(a.proc.locks.tryLock(RECORD.table, RECORD.key), { code: 'ERR_SESSION_CLOSED' }, 'the straggler cannot take the record after FINISH');
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
  await withEnterHeldPastClose(t, false, async ({ r, id, hold, entering, leases }) => {
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
  });
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
    // After FINISH: refused in Redis (fenced by the process token).
    assert.equal(await a.proc.locks.tryLock('R', 1).catch((e: { code?: string }) => e.code), 'ERR_SESSION_CLOSED');
    assert.equal(await taskProc!.locks.tryLock('T', 2).catch((e: { code?: string }) => e.code), 'ERR_SESSION_CLOSED');
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
  await withEnterHeldPastClose(t, true, async ({ id, hold, entering, leases }) => {
    hold.deliver();
    assert.ok(await eventually(() => entering.settled, 5_000));
    if (entering.error !== undefined) return; // refused: fine
    const b = entering.value!;
    leases.push(b);
    // Its enter answered after the close ended may also be tried again and find the session gone: the
    // request then gets a new session (a fresh context), which is as right.
    const straggler = b.sessionId === id;
    assert.deepEqual({ closed: b.proc.closed, vars: b.proc.vars, held: b.proc.locks.held().length },
      { closed: straggler, vars: {}, held: 0 }, straggler ? 'a straggler of a finished close must not see the old context' : 'a new session starts from a fresh context');
  });
});

test('a late enter reply for a close this node no longer remembers (4,096 closes later): once its release finds the session gone, the node lists it open no more', { timeout: 30_000 }, async (t) => {
  await withEnterHeldPastClose(t, false, async ({ r, x, seen, id, hold, entering, leases }) => {
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
  });
});

interface EnterHeldPastClose {
  readonly r: RedisForTest;
  readonly x: Awaited<ReturnType<typeof node>>;
  readonly seen: HeldMessages;
  /** The session closed. */
  readonly id: string;
  /** x's enter reply into it, held since Redis ran the enter. */
  readonly hold: ReturnType<typeof holdEnterReplies>;
  readonly entering: ReturnType<typeof track<RequestLease<Vars>>>;
  /** Leases the body takes, released at the end. */
  readonly leases: (RequestLease<Vars> | undefined)[];
}

/**
 * Two nodes: a session made on x (vars.login 'alice', and the record locked if `lockFirst`) is entered
 * again on x, the enter's reply held once Redis has run it (the process busy); y closes the session,
 * gives up on that request and finishes, and x hears the close end (x). Then `body` runs; the nodes stop.
 */
async function withEnterHeldPastClose(t: TestContext, lockFirst: boolean, body: (held: EnterHeldPastClose) => Promise<void>): Promise<void> {
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
    if (lockFirst) assert.equal(await first.proc.locks.tryLock(RECORD.table, RECORD.key), true);
    first.release();
    const id = first.sessionId;
    assert.ok(await idleInRedis(r, id));
    const hold = holdEnterReplies(x.client);
    const entering = track(x.engine.acquire({ sessionId: id, ip: IP }));
    await hold.sent; // Redis ran the enter: the process is busy
    closing = track(y.engine.closeSession(id));
    assert.ok(await settledAsTimePasses(clock, closing), 'the close gave up on the request and finished');
    assert.ok(await eventually(() => seen.seen.includes(`x ${id}`), 5_000), 'x heard the close end');
    await body({ r, x, seen, id, hold, entering, leases });
  } finally {
    await stopAll(clock, leases, closing, x, y);
  }
}
