// A request that STARTS the close of another session without awaiting it (left alone, or given a
// handler) and goes on working in its own context waits for nothing. When the other session's hook
// then closes this request's session, the rule stays: a session's hook sees its context only after its
// running request left (here: once the request released), never while the request still works in it.
// A handler chained at the call (.then(log, ignore), .catch(log)) is no await (src/close-waits.ts): no
// wait is recorded, so no cycle is seen and no other run's wait ends early.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deferred, eventually, settle } from './helpers.js';
import { phoneAndLaptop } from './devices-support.js';
import { storeChoices } from './store-choices.js';

const FORMS = {
  'left alone': (closing: Promise<boolean>): void => { void closing; },
  'given a handler': (closing: Promise<boolean>, heard: (closed: boolean) => void): void => { closing.then(heard, () => {}); },
  'given .catch': (closing: Promise<boolean>): void => { closing.catch(() => {}); },
} as const;

for (const [name, choose] of storeChoices()) {
  for (const [form, start] of Object.entries(FORMS)) {
    test(`${name}: a request that starts closeSession of a device whose hook logs out every device (${form}, not awaited) and works on has its hook only after it left`, { timeout: 20_000 }, async (t) => {
      const choice = await choose(t);
      if (choice === 'skip') return;
      let laptopReleased = false;
      const { engine, errors, clock, hooks, phone, laptop } = await phoneAndLaptop(choice.options, (proc) => `${String(proc.vars.device)} (laptop request released: ${laptopReleased})`);
      const gate = deferred();
      try {
        let answer: boolean | undefined;
        const work = laptop.run(async () => {
          start(engine.closeSession(phone), (closed) => { answer = closed; });
          await gate.promise; // still working in its context
          laptop.proc.vars.device = 'laptop (work saved)';
        }).then(() => { laptopReleased = true; laptop.release(); });
        assert.ok(await eventually(() => hooks.length >= 1, 5_000), 'the phone\'s hook ran');
        await settle();
        assert.deepEqual(hooks, ['phone (laptop request released: false)'], 'the laptop\'s hook must wait for its request to leave');
        gate.resolve();
        await work;
        assert.ok(await eventually(() => hooks.length === 2, 5_000), 'the laptop\'s hook ran after its request');
        assert.equal(hooks[1], 'laptop (work saved) (laptop request released: true)');
        // The phone's close ended once its hook's logout of the laptop did: the handler hears it then.
        if (form === 'given a handler') assert.ok(await eventually(() => answer === true, 5_000), 'the handler heard the close');
        assert.deepEqual(errors.map((e) => e.code), [], 'nothing timed out');
      } finally {
        gate.resolve();
        clock.advance(60_000);
        await engine.stop();
      }
    });
  }
}
