// A close awaited through a promise wrapper that calls then() in the same turn as the call
// (`new Promise((resolve, reject) => engine.closeSession(id).then(resolve, reject))`, as promise
// utilities wrapping a promise with a timeout or a retry do): it holds its caller as `await` does, so
// two requests awaiting each other's session's close that way are a cycle, broken at once (as with plain
// awaits), not after closeTimeoutMs. A then() at the call is a chain (`.then(log, ignore)`) unless it is
// given a promise's own resolving function, as such a wrapper gives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type SessionError } from '../src/index.js';
import { engineWithErrors, eventually } from './helpers.js';
import { twoDevices } from './devices-support.js';
import { storeChoices } from './store-choices.js';

const wrapped = <T>(make: () => Promise<T>): Promise<T> => new Promise<T>((resolve, reject) => { make().then(resolve, reject); });

for (const [name, choose] of storeChoices()) {
  test(`${name}: two requests awaiting each other's session's close through a wrapper: the cycle is broken without closeTimeoutMs passing`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const { engine, errors } = engineWithErrors<{ device?: string }>({ ...choice.options, clock, closeTimeoutMs: 10_000, init: () => ({}) });
    try {
      const { laptop, phone } = await twoDevices(engine);
      const done: string[] = [];
      const fromLaptop = laptop.run(async () => { await wrapped(() => engine.closeSession(phone.sessionId)); done.push('laptop'); }).finally(() => laptop.release());
      const fromPhone = phone.run(async () => { await wrapped(() => engine.closeSession(laptop.sessionId)); done.push('phone'); }).finally(() => phone.release());
      const broken = await eventually(() => done.length === 2, 3_000);
      clock.advance(20_000);
      await Promise.allSettled([fromLaptop, fromPhone]);
      assert.ok(broken, 'both requests went on without session time passing');
      assert.deepEqual(errors.map((e: SessionError) => e.code), []);
    } finally {
      clock.advance(60_000);
      await engine.stop();
    }
  });
}
