// "Log out my other devices" clicked on two devices at once: each request awaits WEB LEGACY CLOSE SESSION
// of the other device's session, whose close waits for that other request to end. DESIGN: "Never
// deadlock". Neither close may wait for closeTimeoutMs (session time stands still here: only a
// wait-for cycle can hold a close, and its bound is closeTimeoutMs on the clock).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type CloseReason, type SessionError } from '../src/index.js';
import { engineWithErrors, eventually } from './helpers.js';
import { phoneAndLaptop, twoDevices } from './devices-support.js';
import { storeChoices } from './store-choices.js';

for (const [name, choose] of storeChoices()) {
  test(`${name}: two requests, each awaiting closeSession of the other's session, both return without waiting closeTimeoutMs; each hook runs once with the vars its request left`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const hooks: Array<{ device: unknown; reason: CloseReason }> = [];
    const { engine, errors } = engineWithErrors<{ device?: string }>({
      ...choice.options, clock, closeTimeoutMs: 10_000, init: () => ({}),
      onClose: (proc, reason) => { hooks.push({ device: proc.vars.device, reason }); },
    });
    try {
      const { laptop, phone } = await twoDevices(engine);
      let laptopDone = false;
      let phoneDone = false;
      const fromLaptop = laptop.run(async () => engine.closeSession(phone.sessionId)).then((closed) => { laptopDone = true; laptop.release(); return closed; });
      const fromPhone = phone.run(async () => engine.closeSession(laptop.sessionId)).then((closed) => { phoneDone = true; phone.release(); return closed; });
      assert.ok(await eventually(() => laptopDone && phoneDone, 3_000), `both requests went on without session time passing (laptop ${laptopDone}, phone ${phoneDone})`);
      assert.deepEqual([await fromLaptop, await fromPhone], [true, true]);
      assert.ok(await eventually(() => hooks.length === 2, 3_000), 'both hooks ran');
      assert.deepEqual(hooks.map((h) => `${String(h.device)} ${h.reason}`).sort(), ['laptop closed', 'phone closed']);
      assert.deepEqual(errors.map((e: SessionError) => e.code), [], 'no drain timed out');
    } finally {
      clock.advance(60_000); // frees whatever still waits, so stop() ends
      await engine.stop();
    }
  });
}

for (const [name, choose] of storeChoices()) {
  test(`${name}: a request awaiting the close of another device whose hook logs out every device (this one too) returns without waiting closeTimeoutMs; each hook runs once`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const { engine, errors, clock, hooks, phone, laptop } = await phoneAndLaptop(choice.options);
    try {
      let done = false;
      const fromLaptop = laptop.run(async () => engine.closeSession(phone)).then((closed) => { done = true; laptop.release(); return closed; });
      assert.ok(await eventually(() => done, 3_000), 'the laptop\'s request went on without session time passing');
      assert.equal(await fromLaptop, true);
      assert.ok(await eventually(() => hooks.length === 2, 3_000), 'both hooks ran');
      assert.deepEqual([...hooks].sort(), ['laptop', 'phone']);
      assert.deepEqual(errors.map((e: SessionError) => e.code), [], 'nothing timed out');
    } finally {
      clock.advance(60_000);
      await engine.stop();
    }
  });

  test(`${name}: a hook awaiting the close of a busy session whose request then awaits the hook's session's close: neither waits closeTimeoutMs`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const hooks: string[] = [];
    let other = '';
    const { engine, errors } = engineWithErrors<{ device?: string }>({
      ...choice.options, clock, closeTimeoutMs: 10_000, init: () => ({}),
      onClose: async (proc) => {
        hooks.push(String(proc.vars.device));
        if (proc.vars.device === 'phone') await engine.closeSession(other);
      },
    });
    try {
      const phone = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
      phone.proc.vars.device = 'phone';
      phone.release();
      const laptop = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
      laptop.proc.vars.device = 'laptop';
      other = laptop.sessionId;
      const phoneClosed = engine.closeSession(phone.sessionId); // its hook now awaits the laptop's close, which waits for the laptop's request
      assert.ok(await eventually(() => hooks.length === 1, 3_000), 'the phone\'s hook began');
      let done = false;
      const fromLaptop = laptop.run(async () => engine.closeSession(phone.sessionId)).then((closed) => { done = true; laptop.release(); return closed; });
      assert.ok(await eventually(() => done, 3_000), 'the laptop\'s request went on without session time passing');
      assert.deepEqual([await fromLaptop, await phoneClosed], [true, true]);
      assert.ok(await eventually(() => hooks.length === 2, 3_000), 'both hooks ran');
      assert.deepEqual(errors.map((e: SessionError) => e.code), [], 'nothing timed out');
    } finally {
      clock.advance(60_000);
      await engine.stop();
    }
  });
}
