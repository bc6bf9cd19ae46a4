// A task spawned with an empty name (a string, as spawn asks): its close's hook sees proc.name '' on
// both stores. On Redis the close rebuilds the process from what SPAWN stored (n:<pid>), and an empty
// stored name must not read as "no name stored" (a task spawned by a node of an earlier version: 'task').
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type SessionError } from '../src/index.js';
import { eventually } from './helpers.js';
import { untilAborted } from './engine-harness.js';
import { storeChoices } from './store-choices.js';

for (const [name, choose] of storeChoices({ pollIntervalMs: 20 })) {
  test(`${name}: the hook of a task spawned with an empty name sees proc.name ''`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const names: string[] = [];
    const engine = new SessionEngine<{ n: number }>({ ...choice.options, clock: new ManualClock(), init: () => ({ n: 0 }), onClose: (proc) => { names.push(proc.name); } });
    const errors: string[] = [];
    engine.on('error', (error: SessionError) => errors.push(error.code));
    try {
      const lease = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
      let started = false;
      const task = lease.run(() => lease.proc.spawn('', async (proc) => {
        started = true;
        await untilAborted(proc.signal);
      }));
      assert.equal(task.name, '');
      lease.release();
      assert.ok(await eventually(() => started, 3_000), 'the task runs');
      assert.equal(await engine.closeSession(lease.sessionId), true);
      assert.deepEqual(names.sort(), ['', 'web']);
      assert.deepEqual(errors, []);
    } finally {
      await engine.stop();
    }
  });
}
