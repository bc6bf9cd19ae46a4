// Spec edge cases 21 and 22 (docs/spec-edge-cases.md): a session with several processes (4D Mobile)
// closes by aborting every process, waiting for its running work, then one hook per process in its own
// context, one at a time, each seeing its own proc.name; its id is dead from the start. Both stores.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type SessionError } from '../src/index.js';
import { deferred, eventually, settle } from './helpers.js';
import { untilAborted } from './engine-harness.js';
import { engineOn, type Vars } from './spec-edge-cases-support.js';
import { storeChoices } from './store-choices.js';

const IP = '127.0.0.1';

for (const [name, storeFor] of storeChoices({ pollIntervalMs: 20 })) {
  test(`${name}: cases 21 and 22, a session with two processes: the close aborts the task, its id is dead at once, the hooks wait for the task, then run once per process, never two at a time`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const log: string[] = [];
    let running = 0;
    let overlap = false;
    const gates: Array<() => void> = [];
    let closedOnce = false; // the hooks of stop() at the end do not wait
    const { engine, errors } = engineOn({
      ...choice.options, clock,
      onClose: async (proc) => {
        if (closedOnce) return;
        running++;
        if (running > 1) overlap = true;
        log.push(`hook ${proc.processId}`);
        const gate = deferred();
        gates.push(() => gate.resolve());
        await gate.promise;
        running--;
      },
    });
    const taskEnd = deferred();
    try {
      const lease = await engine.acquire({ sessionId: undefined, ip: IP });
      const id = lease.sessionId;
      const task = lease.run(() => lease.proc.spawn('mobile', async (proc) => {
        log.push('task started');
        await untilAborted(proc.signal);
        log.push('task aborted');
        await taskEnd.promise;
        log.push('task end');
      }));
      lease.release();
      // The task has started (on Redis its spawn is granted a round trip later; the next test closes before).
      assert.ok(await eventually(() => engine.sessionProcessCount(id) === 2 && log.includes('task started'), 3_000), 'two processes, the task running');
      log.length = 0;
      let closed: boolean | undefined;
      void engine.closeSession(id).then((value) => { closed = value; });
      assert.ok(await eventually(() => log.includes('task aborted'), 3_000), 'the task was signalled');
      const during = await engine.acquire({ sessionId: id, ip: IP });
      assert.notEqual(during.sessionId, id, 'the id is dead from the start of the close');
      during.release();
      await settle();
      assert.deepEqual(log, ['task aborted'], 'no hook while the task runs');
      taskEnd.resolve();
      assert.ok(await eventually(async () => {
        for (const open of gates.splice(0)) open();
        await settle();
        return closed !== undefined;
      }, 5_000), 'the close ended');
      closedOnce = true;
      assert.equal(closed, true);
      assert.deepEqual(log.slice(0, 2), ['task aborted', 'task end'], 'hooks after the task ended');
      assert.deepEqual(log.slice(2).sort(), [`hook ${lease.proc.processId}`, `hook ${task.processId}`].sort(), 'one hook per process');
      assert.equal(overlap, false, "two hooks of one session ran at the same time");
      assert.deepEqual(errors, []);
    } finally {
      closedOnce = true;
      taskEnd.resolve();
      for (const open of gates.splice(0)) open();
      await engine.stop();
    }
  });

  test(`${name}: case 22, a close asked while a spawn is still on its way (Redis: a round trip) aborts the task and waits for it to end, not for closeTimeoutMs`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const log: string[] = [];
    const errors: string[] = [];
    const engine = new SessionEngine<Vars>({ ...choice.options, clock, init: () => ({ n: 0 }), onClose: (proc) => { log.push(`hook ${proc.processId}`); } });
    engine.on('error', (error: SessionError) => errors.push(error.code));
    const taskEnd = deferred();
    try {
      const lease = await engine.acquire({ sessionId: undefined, ip: IP });
      const task = lease.run(() => lease.proc.spawn('export', async (proc) => {
        log.push('task started');
        await untilAborted(proc.signal);
        log.push('task aborted');
        await taskEnd.promise;
        log.push('task end');
      }));
      lease.release();
      let closed: boolean | undefined;
      void engine.closeSession(lease.sessionId).then((value) => { closed = value; });
      // No time passes on the engine's clock: closeTimeoutMs (30 s) never comes.
      assert.ok(await eventually(() => log.includes('task aborted'), 3_000), `the task's signal was aborted (log: ${JSON.stringify(log)})`);
      taskEnd.resolve();
      assert.ok(await eventually(() => closed !== undefined, 3_000), 'the close ended once the task did');
      assert.equal(closed, true);
      assert.deepEqual(log.slice(0, 3), ['task started', 'task aborted', 'task end'], 'hooks after the task ended');
      assert.deepEqual(log.slice(3).sort(), [`hook ${lease.proc.processId}`, `hook ${task.processId}`].sort());
      assert.deepEqual(errors, [], 'no drain timeout');
    } finally {
      taskEnd.resolve();
      clock.advance(30_000); // a close still waiting after a failed assertion
      await engine.stop();
    }
  });

  test(`${name}: the hook of a spawned process sees proc.name as given to spawn`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const names: string[] = [];
    const engine = new SessionEngine<Vars>({ ...choice.options, clock: new ManualClock(), init: () => ({ n: 0 }), onClose: (proc) => { names.push(proc.name); } });
    const errors: string[] = [];
    engine.on('error', (error: SessionError) => errors.push(error.code));
    try {
      const lease = await engine.acquire({ sessionId: undefined, ip: IP });
      let started = false;
      const task = lease.run(() => lease.proc.spawn('export', async (proc) => {
        started = true;
        await untilAborted(proc.signal);
      }));
      assert.equal(task.name, 'export');
      lease.release();
      assert.ok(await eventually(() => started, 3_000), 'the task runs');
      assert.equal(await engine.closeSession(lease.sessionId), true);
      assert.deepEqual(names.sort(), ['export', 'web']);
      assert.deepEqual(errors, []);
    } finally {
      await engine.stop();
    }
  });
}
