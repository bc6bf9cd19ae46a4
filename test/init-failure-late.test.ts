// An `init` that fails or outlasts its session, on both stores: a stop or a close that gives up waiting
// for a slow async init (the request never runs in the torn-down process), a result that is not an
// object, a spawned process whose init fails while its session closes. The first cases (a session made
// for a failed init is discarded): init-failure.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type SessionError } from '../src/index.js';
import { deferred, eventually, settle } from './helpers.js';
import { storeChoices } from './store-choices.js';
import { engineOn, IP, RECORD, type Vars } from './init-failure-support.js';

const stores = storeChoices();

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
