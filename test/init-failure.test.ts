// An `init` that throws, on both stores: the process it was making never had a context, so it leaves
// with nothing kept (the record locks it took are released), and a session made for it is discarded
// (its id reached no client: it must not count against the cap, nor be evicted later as if it lived).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type SessionError, type CloseEvent, type CreateEvent, type SessionEngineOptions } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { deferred, eventually, settle } from './helpers.js';
import { wrapScript } from './redis-crossing.js';
import { redisForTest } from './redis-support.js';
import { storeChoices, type StoreChoice } from './store-choices.js';

type Vars = { n?: number };
const IP = '127.0.0.1';
const RECORD = { table: 'Products', key: 7 };


const stores = storeChoices();

function engineOn(choice: Exclude<StoreChoice, 'skip'>, options: SessionEngineOptions<Vars>): { engine: SessionEngine<Vars>; creates: CreateEvent[]; closes: CloseEvent[]; errors: string[] } {
  const engine = new SessionEngine<Vars>({ ...options, ...choice.options });
  const creates: CreateEvent[] = [];
  const closes: CloseEvent[] = [];
  const errors: string[] = [];
  engine.on('create', (event) => creates.push(event));
  engine.on('close', (event) => closes.push(event));
  engine.on('error', (error) => errors.push(error.code));
  return { engine, creates, closes, errors };
}

for (const [name, storeFor] of stores) {
  test(`${name}: a new session whose init throws after taking a record lock is discarded: the lock is free, nothing counts it (stats, events, the cap), nothing is evicted to make room later`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    let failing = true;
    const { engine, creates, closes, errors } = engineOn(choice, {
      clock: new ManualClock(),
      maxSessions: 1,
      init: async (proc) => {
        assert.equal(await proc.locks.tryLock(RECORD.table, RECORD.key), true);
        if (failing) throw new Error('database down');
        return { n: 0 };
      },
    });
    try {
      await assert.rejects(engine.acquire({ sessionId: undefined, ip: IP }), { code: 'ERR_SESSION_INIT_FAILED' });
      assert.deepEqual(errors, ['ERR_SESSION_INIT_FAILED']);
      assert.equal(await engine.lockManager.lockedBy(RECORD), null, 'the lock taken by the failed init is released');
      assert.deepEqual(engine.sessions(), []);
      assert.equal(engine.stats().created, 0, 'a session that never got a context was never created');
      assert.deepEqual(creates, []);
      if (choice.redis !== undefined) assert.deepEqual(await choice.redis.redis.zrange(`${choice.redis.prefix}open`, '0', '-1'), [], 'no session of the failed init is left in Redis');
      // The cap is 1: a newcomer is admitted without closing anything.
      failing = false;
      const next = await engine.acquire({ sessionId: undefined, ip: IP });
      assert.equal(next.proc.vars.n, 0);
      assert.equal(await engine.lockManager.lockedBy(RECORD).then((owner) => owner?.processId), next.proc.processId, 'the next session takes the lock');
      next.release();
      assert.deepEqual(closes, [], 'nothing was evicted to make room');
      assert.equal(engine.stats().closed.evicted, 0);
      assert.equal(engine.stats().created, 1);
      assert.equal(creates.length, 1);
    } finally {
      await engine.stop();
    }
  });

  test(`${name}: an extra process whose init throws after taking a record lock leaves its session with the lock released; the session lives on`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    let inits = 0;
    const { engine, closes } = engineOn(choice, {
      clock: new ManualClock(),
      processesPerSession: 2,
      // Only the second init fails (on Redis the third request may get a process of its own: the first
      // one's release may not have landed yet).
      init: async (proc) => {
        if (++inits !== 2) return { n: 1 };
        assert.equal(await proc.locks.tryLock(RECORD.table, RECORD.key), true);
        throw new Error('database down');
      },
    });
    engine.on('error', () => {});
    try {
      const first = await engine.acquire({ sessionId: undefined, ip: IP });
      try {
        await assert.rejects(engine.acquire({ sessionId: first.sessionId, ip: IP }), { code: 'ERR_SESSION_INIT_FAILED' });
        assert.equal(await engine.lockManager.lockedBy(RECORD), null, 'the lock taken by the failed init is released');
        assert.equal(await first.proc.locks.tryLock(RECORD.table, RECORD.key), true, 'the session\'s own process can take it');
      } finally {
        first.release();
      }
      const again = await engine.acquire({ sessionId: first.sessionId, ip: IP });
      assert.equal(again.sessionId, first.sessionId, 'the session lives on');
      assert.equal(again.proc.vars.n, 1);
      again.release();
      assert.deepEqual(closes, []);
      assert.equal(engine.stats().created, 1);
    } finally {
      await engine.stop();
    }
  });
}

for (const [name, storeFor] of stores) {
  test(`${name}: at a cap of 1, a newcomer whose init fails (no lock taken) leaves its place at once: the retry right after is admitted and nothing is evicted`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    let inits = 0;
    const { engine, closes, errors } = engineOn(choice, { clock: new ManualClock(), maxSessions: 1, init: () => { if (++inits === 1) throw new Error('database down'); return { n: 0 }; } });
    try {
      await assert.rejects(engine.acquire({ sessionId: undefined, ip: IP }), { code: 'ERR_SESSION_INIT_FAILED' });
      const retry = await engine.acquire({ sessionId: undefined, ip: IP });
      retry.release();
      assert.deepEqual(closes, []);
      assert.deepEqual(errors, ['ERR_SESSION_INIT_FAILED']);
    } finally {
      await engine.stop();
    }
  });

  test(`${name}: an init that spawns a task, then throws: the session is discarded with its task (asked to stop, its lock released when it ends), no close event, nothing counted`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const taskDone = deferred<void>();
    const taskGo = deferred<void>();
    let taskSignal: AbortSignal | undefined;
    const { engine, creates, closes } = engineOn(choice, {
      clock: new ManualClock(),
      maxSessions: 1,
      init: async (proc) => {
        if (proc.name !== 'web') return {}; // the task's own process runs init too
        proc.spawn('export', async (task) => {
          taskSignal = task.signal;
          await task.locks.tryLock(RECORD.table, RECORD.key).catch(() => false);
          await taskGo.promise;
          taskDone.resolve();
        });
        // The task runs (on Redis its spawn is a round trip; a spawn granted only after the discard
        // never runs at all, which is not this test's case).
        await eventually(() => taskSignal !== undefined, 5_000);
        throw new Error('database down');
      },
    });
    engine.on('error', () => {});
    try {
      await assert.rejects(engine.acquire({ sessionId: undefined, ip: IP }), { code: 'ERR_SESSION_INIT_FAILED' });
      assert.deepEqual(engine.sessions(), []);
      if (choice.redis !== undefined) assert.deepEqual(await choice.redis.redis.zrange(`${choice.redis.prefix}open`, '0', '-1'), [], 'no session of the failed init is left in Redis');
      assert.equal(taskSignal?.aborted, true, 'the task is asked to stop');
      taskGo.resolve();
      await taskDone.promise;
      assert.ok(await eventually(async () => (await engine.lockManager.lockedBy(RECORD)) === null, 5_000), 'no lock of the task outlives it');
      assert.equal(engine.stats().created, 0);
      assert.deepEqual(creates, []);
      assert.deepEqual(closes, []);
    } finally {
      taskGo.resolve();
      await engine.stop();
    }
  });
}

test('Redis store: a failed init whose lock release fails (Redis away for it) releases the lock once Redis answers again: the failure is reported, then retried', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const client = await r.client();
  const engine = new SessionEngine<Vars>({
    clock: new ManualClock(),
    store: createRedisStore({ redis: client, prefix: r.prefix, pollIntervalMs: 5 }),
    init: async (proc) => {
      assert.equal(await proc.locks.tryLock(RECORD.table, RECORD.key), true);
      throw new Error('database down');
    },
  });
  const errors: string[] = [];
  engine.on('error', (error) => errors.push(error.code));
  // The first release of locks fails as if Redis were away; later ones reach it.
  let failures = 0;
  wrapScript(client, 'lwsLockReleaseAll', (releaseAll) => async (...args) => {
    if (failures++ === 0) throw new Error('Connection is closed.');
    return releaseAll(...args);
  });
  try {
    await assert.rejects(engine.acquire({ sessionId: undefined, ip: IP }), { code: 'ERR_SESSION_INIT_FAILED' });
    assert.deepEqual(errors, ['ERR_SESSION_STORE_UNAVAILABLE', 'ERR_SESSION_INIT_FAILED']);
    assert.ok(await eventually(async () => (await engine.lockManager.lockedBy(RECORD)) === null, 5_000), 'the lock is released by a retry');
  } finally {
    await engine.stop();
  }
});

for (const [name, storeFor] of stores) {
  test(`${name}: a new session closed while its first init runs, which then fails, was never made: closeSession is true, but neither 'create' nor 'close' is said of it, nor counted`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const initDone = deferred<Vars>();
    const { engine, creates, closes } = engineOn(choice, { clock: new ManualClock(), init: () => initDone.promise });
    engine.on('error', () => {});
    try {
      const entering = engine.acquire({ sessionId: undefined, ip: IP });
      entering.catch(() => {});
      assert.ok(await eventually(() => engine.sessions().length === 1, 5_000));
      const closing = engine.closeSession(engine.sessions()[0]!.id);
      await settle(10);
      initDone.reject(new Error('database down'));
      await assert.rejects(entering, { code: 'ERR_SESSION_INIT_FAILED' });
      assert.equal(await closing, true);
      await settle(10);
      assert.deepEqual(creates, []);
      assert.deepEqual(closes, []);
      const stats = engine.stats();
      assert.deepEqual([stats.created, stats.closed.closed], [0, 0]);
    } finally {
      await engine.stop();
    }
  });
}

for (const [name, storeFor] of stores) {
  test(`${name}: a 'create' listener that throws is reported (ERR_SESSION_HANDLER_FAILED) and takes nothing along: the request gets its session, released as any other`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const { engine, errors } = engineOn(choice, { clock: new ManualClock(), maxSessions: 1 });
    engine.on('create', () => { throw new Error('listener bug'); });
    try {
      const lease = await engine.acquire({ sessionId: undefined, ip: IP });
      assert.deepEqual(errors, ['ERR_SESSION_HANDLER_FAILED']);
      lease.release();
      assert.ok(await eventually(() => engine.sessions().every((s) => !s.busy), 5_000), 'the session goes idle');
      // At the cap of 1 a newcomer evicts it (on Redis once its release has landed there).
      const admitted = async (): Promise<boolean> => engine.acquire({ sessionId: undefined, ip: IP }).then((next) => { next.release(); return true; }, () => false);
      assert.ok(await eventually(admitted, 5_000), 'the session went idle: a newcomer evicts it');
    } finally {
      await engine.stop();
    }
  });
}

for (const [name, storeFor] of stores) {
  test(`${name}: a stop that gives up waiting for a slow async init (closeTimeoutMs): the request never runs in the torn-down process, init's vars do not come back into it, no 'create'`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const initDone = deferred<Vars>();
    const { engine, creates, errors } = engineOn(choice, { clock, closeTimeoutMs: 200, init: () => initDone.promise });
    const acquiring = engine.acquire({ sessionId: undefined, ip: IP });
    const outcome = acquiring.then((lease) => { lease.release(); return 'ran'; }, (error: { code?: string }) => error.code);
    await settle();
    let stopped = false;
    void engine.stop().then(() => { stopped = true; });
    // Memory: the drain gives up on the request at closeTimeoutMs. Redis: the stop refuses the session
    // whose creation has not reached Redis yet.
    assert.ok(await eventually(() => { clock.advance(100); return stopped; }, 5_000), 'the stop ended without init');
    initDone.resolve({ n: 1 });
    const refused = await outcome;
    assert.ok(refused === 'ERR_SESSION_CLOSED' || refused === 'ERR_SESSION_STOPPED', `the request was ${refused}`);
    assert.deepEqual(creates, []);
    assert.deepEqual(errors.filter((code) => code !== 'ERR_SESSION_DRAIN_TIMEOUT'), []);
  });
}

for (const [name, storeFor] of stores) {
  test(`${name}: a second process whose slow init outlasts its session's close (closeSession gives up waiting at closeTimeoutMs): the request does not run in the closed session, and leaves no lock`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    let slowInit: ReturnType<typeof deferred<Vars>> | undefined;
    const { engine } = engineOn(choice, { clock, processesPerSession: 2, closeTimeoutMs: 200, init: () => slowInit?.promise ?? { n: 0 } });
    const first = await engine.acquire({ sessionId: undefined, ip: IP });
    const id = first.sessionId;
    slowInit = deferred<Vars>();
    const outcome = engine.acquire({ sessionId: id, ip: IP }).then(async (lease) => {
      const locked = await lease.proc.locks.tryLock(RECORD.table, RECORD.key).catch(() => false);
      lease.release();
      return `ran (lock ${String(locked)})`;
    }, (error: { code?: string }) => error.code);
    await settle();
    first.release();
    let closed: boolean | undefined;
    void engine.closeSession(id).then((value) => { closed = value; });
    assert.ok(await eventually(() => { clock.advance(100); return closed !== undefined; }, 5_000), 'the close ended without the slow init');
    assert.equal(closed, true);
    slowInit.resolve({ n: 42 });
    const result = await outcome;
    // Memory moves a request whose session closed meanwhile to a new session; Redis refuses it. Neither runs it in the closed one.
    if (result !== 'ERR_SESSION_CLOSED') {
      assert.match(result ?? '', /^ran/);
      assert.equal(engine.sessionProcessCount(id), 0, 'not in the closed session');
    }
    const other = await engine.acquire({ sessionId: undefined, ip: IP });
    const holder = await other.proc.locks.lockedBy(RECORD.table, RECORD.key);
    assert.ok(holder === null || (holder.sessionId !== id && engine.sessions().some((s) => s.id === holder.sessionId)), `the record is free or held by a live session, never by the closed one: ${JSON.stringify(holder)}`);
    other.release();
    await engine.stop();
  });
}

for (const [name, storeFor] of stores) {
  test(`${name}: an init whose result is not an object (a number, null, a promise of a string) fails as init does: ERR_SESSION_INIT_FAILED naming the reason, the session discarded; a spawned process's init failing is ERR_SESSION_INIT_FAILED, not its task's failure`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    let result: unknown = 5;
    const { engine, creates } = engineOn(choice, { clock: new ManualClock(), init: () => result as Vars });
    const failures: SessionError[] = [];
    engine.on('error', (error) => failures.push(error));
    for (const bad of [5, null, Promise.resolve('text')]) {
      result = bad;
      await assert.rejects(engine.acquire({ sessionId: undefined, ip: IP }), (error: { code?: string }) => error.code === 'ERR_SESSION_INIT_FAILED');
    }
    assert.deepEqual(failures.map((e) => [e.code, (e.cause as Error).message]), [
      ['ERR_SESSION_INIT_FAILED', 'invalid argument: init must return an object (or a promise of one) for the process\'s vars, got number'],
      ['ERR_SESSION_INIT_FAILED', 'invalid argument: init must return an object (or a promise of one) for the process\'s vars, got null'],
      ['ERR_SESSION_INIT_FAILED', 'invalid argument: init must return an object (or a promise of one) for the process\'s vars, got string'],
    ]);
    assert.deepEqual(creates, []);
    assert.equal(engine.stats().sessions, 0);

    result = { n: 1 };
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    result = 'no vars';
    let taskRan = false;
    lease.proc.spawn('report', async () => { taskRan = true; });
    assert.ok(await eventually(() => failures.length === 4, 5_000));
    assert.equal(failures[3]!.code, 'ERR_SESSION_INIT_FAILED');
    assert.match(failures[3]!.message, /\(report\)/);
    assert.equal(taskRan, false, 'the task never runs without its vars');
    assert.equal(engine.stats().taskErrors, 1);
    lease.release();
    await engine.stop();
  });
}

for (const [name, storeFor] of stores) {
  test(`${name}: a spawned process whose init fails while its session closes is not hooked (it never had a context); the session's other process is`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const gate = deferred();
    const hooked: string[] = [];
    const { engine, errors } = engineOn(choice, {
      clock: new ManualClock(),
      init: async (proc) => {
        if (proc.name !== 'mail') return { n: 1 };
        await gate.promise;
        throw new Error('db down');
      },
      onClose: (proc) => { hooked.push(proc.name); },
    });
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    lease.run(() => { lease.proc.spawn('mail', async () => {}); });
    lease.release();
    await settle();
    const closing = engine.closeSession(lease.sessionId);
    await settle();
    gate.resolve();
    assert.equal(await closing, true);
    assert.ok(await eventually(() => errors.includes('ERR_SESSION_INIT_FAILED'), 5_000));
    assert.deepEqual(hooked, ['web']);
    await engine.stop();
    assert.deepEqual(hooked, ['web'], 'nor at stop');
  });
}

// The memory store's close goes through the session's own list of processes while it hooks them (the
// Redis store's claimer goes through the list it loaded): a process leaving that list then would make it
// skip the next one.
for (const [name, storeFor] of stores.filter(([storeName]) => storeName === 'memory store')) {
  test(`${name}: a spawned process whose init fails after its session's drain gave up (its hooks begun) leaves every other process's hook in place`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const initGate = deferred();
    const hookGate = deferred();
    const hooked: string[] = [];
    const { engine } = engineOn(choice, {
      clock, closeTimeoutMs: 1_000,
      init: async (proc) => {
        if (proc.name !== 'slow') return { n: 1 };
        await initGate.promise;
        throw new Error('db down');
      },
      onClose: async (proc) => {
        hooked.push(proc.name);
        if (proc.name === 'slow') await hookGate.promise; // its init fails while its hook runs
      },
    });
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    lease.run(() => {
      lease.proc.spawn('slow', async () => {});
      lease.proc.spawn('fast', async (p) => { await new Promise((resolve) => p.signal.addEventListener('abort', resolve)); });
    });
    lease.release();
    await settle(20);
    const closing = engine.closeSession(lease.sessionId);
    assert.ok(await eventually(() => { clock.advance(500); return hooked.includes('slow'); }, 5_000), 'the drain gave up on slow, whose hook runs');
    initGate.resolve();
    await settle(20);
    hookGate.resolve();
    assert.equal(await closing, true);
    assert.deepEqual([...hooked].sort(), ['fast', 'slow', 'web'], 'every process hooked once, none skipped');
    await engine.stop();
  });
}
