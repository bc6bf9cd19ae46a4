// stop() called again while a stop runs, from a request of another session (two requests asking for a
// stop, or one asking while a stop from outside runs): that request goes on after its call as the first
// caller does, knowing its session until it is over. The engine's async context is released once every
// run that called stop() is over, not when the store's stop ends while such a request still runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { ManualClock } from '../src/index.js';
import { engineWithErrors } from './helpers.js';
import { storeChoices } from './store-choices.js';

for (const [name, choose] of storeChoices()) {
  for (const first of ['outside', 'a request of another session'] as const) {
    test(`${name}: a request that calls stop() while a stop from ${first} runs still knows its session after its call, until it ends`, { timeout: 20_000 }, async (t) => {
      const choice = await choose(t);
      if (choice === 'skip') return;
      const clock = new ManualClock();
      const { engine, errors } = engineWithErrors({ ...choice.options, clock, closeTimeoutMs: 10_000, init: () => ({}) });
      try {
        const laptop = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
        const phone = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
        let whole: Promise<void>;
        if (first === 'outside') {
          whole = engine.stop();
          laptop.release();
        } else {
          whole = laptop.run(() => engine.stop()).then(() => { laptop.release(); });
        }
        const seen = await phone.run(async () => {
          await engine.stop();
          const right = engine.currentSessionId();
          // The stop's closes have ended (on the memory store the whole stop too): past the engine's check
          // of the runs that called stop() (every second).
          await sleep(1_500);
          return { right, later: engine.currentSessionId() };
        });
        phone.release();
        await whole;
        assert.deepEqual(seen, { right: phone.sessionId, later: phone.sessionId }, 'the request goes on knowing its session');
        assert.deepEqual(errors.map((e) => e.code), []);
      } finally {
        clock.advance(60_000);
        await engine.stop();
      }
    });
  }
}
