// An `init` that throws, on both stores: the process it was making never had a context, so it leaves
// with nothing kept (the record locks it took are released), and a session made for it is discarded
// (its id reached no client: it must not count against the cap, nor be evicted later as if it lived).
// Inits that outlast a close or a stop, results that are no object, spawned processes: init-failure-late.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { deferred, eventually, settle } from './helpers.js';
import { wrapScript } from './redis-crossing.js';
import { redisForTest } from './redis-support.js';
import { storeChoices } from './store-choices.js';
import { engineOn, IP, RECORD, type Vars } from './init-failure-support.js';

const stores = storeChoices();


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
