// Which closeSession calls count as waits when cycles of closes are broken (src/close-waits.ts): every
// way of awaiting is seen, and a chain that is no cycle waits for the close. (A caller that only
// started a close: test/close-cycle-false-positive.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type SessionError } from '../src/index.js';
import { deferred, engineWithErrors, eventually, settle } from './helpers.js';
import { twoDevices } from './devices-support.js';
import { storeChoices } from './store-choices.js';

for (const [name, choose] of storeChoices()) {
  test(`${name}: two requests, each awaiting closeSession of the other's session through Promise.all, both go on without waiting closeTimeoutMs`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const hooks: string[] = [];
    const { engine, errors } = engineWithErrors<{ device?: string }>({
      ...choice.options, clock, closeTimeoutMs: 10_000, init: () => ({}),
      onClose: (proc) => { hooks.push(String(proc.vars.device)); },
    });
    try {
      const { laptop, phone } = await twoDevices(engine);
      const done: string[] = [];
      const fromLaptop = laptop.run(() => Promise.all([engine.closeSession(phone.sessionId)])).then((closed) => { done.push('laptop'); laptop.release(); return closed; });
      const fromPhone = phone.run(() => Promise.all([engine.closeSession(laptop.sessionId)])).then((closed) => { done.push('phone'); phone.release(); return closed; });
      assert.ok(await eventually(() => done.length === 2, 5_000), `both requests went on without session time passing (${done.join(', ')})`);
      assert.deepEqual([await fromLaptop, await fromPhone], [[true], [true]]);
      assert.ok(await eventually(() => hooks.length === 2, 5_000), 'both hooks ran');
      assert.deepEqual([...hooks].sort(), ['laptop', 'phone']);
      assert.deepEqual(errors.map((e: SessionError) => e.code), [], 'no drain timed out');
    } finally {
      clock.advance(60_000);
      await engine.stop();
    }
  });

  test(`${name}: a request awaiting the close of a busy session that awaits nothing keeps waiting until that session's request has left and its hook ran`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const hooks: string[] = [];
    const { engine } = engineWithErrors<{ device?: string }>({
      ...choice.options, clock, closeTimeoutMs: 10_000, init: () => ({}),
      onClose: (proc) => { hooks.push(String(proc.vars.device)); },
    });
    const gate = deferred();
    try {
      const { laptop, phone } = await twoDevices(engine);
      const phoneWork = phone.run(async () => { await gate.promise; phone.proc.vars.device = 'phone (saved)'; }).then(() => phone.release());
      let answer: boolean | undefined;
      const fromLaptop = laptop.run(async () => { answer = await engine.closeSession(phone.sessionId); }).then(() => laptop.release());
      await settle(20);
      assert.equal(answer, undefined, 'no cycle: the close still waits for the phone\'s request');
      assert.deepEqual(hooks, []);
      gate.resolve();
      await phoneWork;
      await fromLaptop;
      assert.equal(answer, true);
      assert.deepEqual(hooks, ['phone (saved)'], 'resolved after the hook, which saw the request\'s work');
    } finally {
      gate.resolve();
      clock.advance(60_000);
      await engine.stop();
    }
  });
}
