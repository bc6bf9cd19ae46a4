// processesPerSession lowered at run time applies at once, on both stores: a session that has more
// request processes keeps them (each holds a context) but runs no more requests at a time than the new
// value. Raising it is in engine-processes.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SessionEngine } from '../src/index.js';
import { eventually, settle } from './helpers.js';
import { track } from './engine-harness.js';
import { storeChoices } from './store-choices.js';

const IP = '127.0.0.1';

for (const [name, storeFor] of storeChoices()) {
  test(`${name}: processesPerSession lowered, a session with more processes runs no more requests at a time than the new value, and keeps its processes`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const engine = new SessionEngine({ ...choice.options, processesPerSession: 2 });
    try {
      const first = await engine.acquire({ sessionId: undefined, ip: IP });
      const id = first.sessionId;
      const second = await engine.acquire({ sessionId: id, ip: IP });
      assert.notEqual(second.proc.processId, first.proc.processId);
      engine.setOption('processesPerSession', 1);
      await settle(20);
      const third = track(engine.acquire({ sessionId: id, ip: IP }));
      first.release();
      await settle(100);
      assert.equal(third.settled, false, 'the other request still runs: the freed process waits');
      second.release();
      assert.ok(await eventually(() => third.settled, 5_000), 'runs once no other request of the session does');
      if (third.error !== undefined) throw third.error;
      const fourth = track(engine.acquire({ sessionId: id, ip: IP }));
      await settle(100);
      assert.equal(fourth.settled, false, 'a free process is there, but one request runs already');
      third.value!.release();
      assert.ok(await eventually(() => fourth.settled, 5_000));
      if (fourth.error !== undefined) throw fourth.error;
      fourth.value!.release();
      assert.equal(engine.sessionProcessCount(id), 2, 'its processes and their contexts are kept');
    } finally {
      await engine.stop();
    }
  });
}
