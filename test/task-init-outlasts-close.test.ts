// A spawned task whose async init outlasts its session's close (the drain gave up on it at
// closeTimeoutMs, the hooks ran, the process was torn down): as a request's process in that case, its
// task never runs and init's vars do not come back into the torn-down process. Reported as
// ERR_SESSION_TASK_FAILED with an ERR_SESSION_CLOSED cause (as a spawn refused in a closed session).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type SessionError, type WebProcess } from '../src/index.js';
import { track } from './engine-harness.js';
import { eventually } from './helpers.js';
import { settledAsTimePasses } from './redis-crossing.js';
import { storeChoices } from './store-choices.js';

type Vars = Record<string, unknown>;

for (const [name, choose] of storeChoices({ pollIntervalMs: 5 })) {
  test(`${name}: a task whose init outlasts its session's close never runs, and init's vars stay out of its torn-down process`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    let endInit!: () => void;
    const initEnds = new Promise<void>((resolve) => { endInit = resolve; });
    const engine = new SessionEngine<Vars>({
      clock, closeTimeoutMs: 10_000, ...choice.options,
      init: (proc) => (proc.name === 'task' ? initEnds.then(() => ({ from: 'init' })) : {}),
    });
    const errors: SessionError[] = [];
    engine.on('error', (e) => errors.push(e));
    let task: WebProcess<Vars> | undefined;
    let ran = false;
    try {
      const a = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
      a.run(() => { task = a.proc.spawn('task', async () => { ran = true; }); });
      a.release();
      const closing = track(engine.closeSession(a.sessionId));
      assert.ok(await settledAsTimePasses(clock, closing), 'the close gave up on the task\'s init and finished');
      assert.equal(closing.value, true);
      assert.ok(await eventually(() => task?.closed === true, 5_000), 'the task\'s process is torn down');
      endInit();
      assert.ok(await eventually(() => errors.some((e) => e.code === 'ERR_SESSION_TASK_FAILED'), 5_000), 'the task\'s end is reported');
      const failure = errors.find((e) => e.code === 'ERR_SESSION_TASK_FAILED');
      assert.equal((failure?.cause as SessionError | undefined)?.code, 'ERR_SESSION_CLOSED');
      assert.equal(ran, false, 'the task did not run');
      assert.deepEqual(task?.vars, {}, 'init\'s vars did not come back into the torn-down process');
    } finally {
      endInit();
      clock.advance(60_000);
      await engine.stop();
    }
  });
}
