// A request that began the stop and calls stop() again (two parts of one shutdown path each calling it,
// `await Promise.all([engine.stop(), engine.stop()])`): the stop it began does not wait for that request
// (it would wait for itself, until closeTimeoutMs, then report a drain timeout). Session time stands
// still here: only such a wait could hold it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type SessionError } from '../src/index.js';
import { engineWithErrors, eventually } from './helpers.js';
import { storeChoices } from './store-choices.js';

for (const [name, choose] of storeChoices()) {
  test(`${name}: a request awaiting the stop it began and its own second call goes on without closeTimeoutMs passing`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const { engine, errors } = engineWithErrors({ ...choice.options, clock, closeTimeoutMs: 10_000 });
    try {
      const lease = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
      let done = false;
      const work = lease.run(() => Promise.all([engine.stop(), engine.stop()])).then(() => { done = true; lease.release(); });
      assert.ok(await eventually(() => done, 3_000), 'both calls resolved without session time passing');
      await work;
      assert.deepEqual(errors.map((e: SessionError) => e.code), [], 'nothing timed out');
    } finally {
      clock.advance(60_000);
      await engine.stop();
    }
  });
}
