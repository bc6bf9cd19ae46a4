// A close started with a cleanup chained at the call (`closeSession(x).finally(done)`) and left to run is
// no await, as `.then(log)` and `.catch(log)` are not (close-cycle-false-positive.test.ts): `finally`
// calls then() with functions of its own, built in and unnamed like a promise's resolving functions,
// but it passes the outcome to no promise anyone awaits. No wait is recorded, so no cycle is seen and
// no other run's wait ends early.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deferred, eventually, settle } from './helpers.js';
import { phoneAndLaptop } from './devices-support.js';
import { storeChoices } from './store-choices.js';

for (const [name, choose] of storeChoices()) {
  test(`${name}: a request that starts closeSession of a device whose hook logs out every device (given .finally, not awaited) and works on has its hook only after it left`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    let laptopReleased = false;
    const { engine, errors, clock, hooks, phone, laptop } = await phoneAndLaptop(choice.options, (proc) => `${String(proc.vars.device)} (laptop request released: ${laptopReleased})`);
    const gate = deferred();
    try {
      let cleanedUp = false;
      const work = laptop.run(async () => {
        void engine.closeSession(phone).finally(() => { cleanedUp = true; });
        await gate.promise; // still working in its context
        laptop.proc.vars.device = 'laptop (work saved)';
      }).then(() => { laptopReleased = true; laptop.release(); });
      assert.ok(await eventually(() => hooks.length >= 1, 5_000), 'the phone\'s hook ran');
      await settle();
      assert.deepEqual(hooks, ['phone (laptop request released: false)'], 'the laptop\'s hook must wait for its request to leave');
      assert.equal(cleanedUp, false, 'the phone\'s close has not ended: its hook awaits the laptop\'s close');
      gate.resolve();
      await work;
      assert.ok(await eventually(() => hooks.length === 2, 5_000), 'the laptop\'s hook ran after its request');
      assert.equal(hooks[1], 'laptop (work saved) (laptop request released: true)');
      assert.ok(await eventually(() => cleanedUp, 5_000), 'the cleanup ran once the close ended');
      assert.deepEqual(errors.map((e) => e.code), [], 'nothing timed out');
    } finally {
      gate.resolve();
      clock.advance(60_000);
      await engine.stop();
    }
  });
}
