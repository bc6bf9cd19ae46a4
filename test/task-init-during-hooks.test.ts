// A spawned task whose init is still running when its session's close stops waiting for it
// (closeTimeoutMs): the close goes on to the hooks, and hooks that process with the context it has (none
// yet). If init ends while the hooks run (before the teardown), the task must not start then either: it
// would run in a process whose onClose is running or has run (invariant 7: a process runs one thing at a
// time; invariant 2: the hook sees the context as it was), and init's vars would come into it under the hook.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type SessionError, type WebProcess } from '../src/index.js';
import { track } from './engine-harness.js';
import { deferred, eventually, settle } from './helpers.js';

type Vars = Record<string, unknown>;

test('memory: a task whose init ends while its session\'s close runs its hooks (the drain gave up on it) never runs, and init\'s vars stay out of the hooked process', { timeout: 20_000 }, async () => {
  const clock = new ManualClock();
  const initGate = deferred();
  const hookGate = deferred();
  let taskHookStarted = false;
  const seenByHook: unknown[] = [];
  const engine = new SessionEngine<Vars>({
    clock, closeTimeoutMs: 10_000,
    init: (proc) => (proc.name === 'task' ? initGate.promise.then(() => ({ from: 'init' })) : {}),
    onClose: async (proc) => {
      if (proc.name !== 'task') return;
      taskHookStarted = true;
      await hookGate.promise;
      seenByHook.push({ ...proc.vars });
    },
  });
  const errors: SessionError[] = [];
  engine.on('error', (e) => errors.push(e));
  let ran = false;
  let task: WebProcess<Vars> | undefined;
  try {
    const a = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
    a.run(() => { task = a.proc.spawn('task', async () => { ran = true; }); });
    a.release();
    const closing = track(engine.closeSession(a.sessionId));
    clock.advance(10_001); // the drain gives up on the task's init
    assert.ok(await eventually(() => taskHookStarted, 5_000), 'the close hooks the task\'s process');
    initGate.resolve(); // init ends while that hook runs
    await settle(20);
    assert.equal(ran, false, 'the task does not start under its own process\'s hook');
    hookGate.resolve();
    assert.ok(await eventually(() => closing.settled, 5_000));
    assert.deepEqual(seenByHook, [{}], 'init\'s vars did not come into the hooked process');
    assert.ok(task?.closed);
    assert.equal(ran, false, 'the task never ran');
    assert.ok(errors.some((e) => e.code === 'ERR_SESSION_TASK_FAILED' && (e.cause as SessionError | undefined)?.code === 'ERR_SESSION_CLOSED'), 'reported as refused');
  } finally {
    initGate.resolve();
    hookGate.resolve();
    clock.advance(60_000);
    await engine.stop();
  }
});

test('memory: a request whose init ends while its session\'s close runs its hooks (the drain gave up on it) is refused with ERR_SESSION_CLOSED, and init\'s vars stay out of the hooked process', { timeout: 20_000 }, async () => {
  const clock = new ManualClock();
  const initGate = deferred();
  const hookGate = deferred();
  let hookStarted = false;
  let sessionId = '';
  const seenByHook: unknown[] = [];
  const engine = new SessionEngine<Vars>({
    clock, closeTimeoutMs: 10_000,
    init: (proc) => { sessionId = proc.sessionId; return initGate.promise.then(() => ({ from: 'init' })); },
    onClose: async (proc) => {
      hookStarted = true;
      await hookGate.promise;
      seenByHook.push({ ...proc.vars });
    },
  });
  try {
    const acquiring = track(engine.acquire({ sessionId: undefined, ip: '127.0.0.1' }));
    assert.ok(await eventually(() => sessionId !== '', 5_000));
    const closing = track(engine.closeSession(sessionId));
    clock.advance(10_001); // the drain gives up on the request's init
    assert.ok(await eventually(() => hookStarted, 5_000), 'the close hooks the request\'s process');
    initGate.resolve(); // init ends while that hook runs
    await settle(20);
    assert.ok(acquiring.settled, 'the request is answered');
    assert.equal((acquiring.error as SessionError | undefined)?.code, 'ERR_SESSION_CLOSED', 'the request does not run under its own process\'s hook');
    hookGate.resolve();
    assert.ok(await eventually(() => closing.settled, 5_000));
    assert.deepEqual(seenByHook, [{}], 'init\'s vars did not come into the hooked process');
  } finally {
    initGate.resolve();
    hookGate.resolve();
    clock.advance(60_000);
    await engine.stop();
  }
});
