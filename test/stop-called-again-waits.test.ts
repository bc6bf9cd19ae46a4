// stop() called again from a request while a stop is under way: the call resolves once the other
// sessions' closes have ended (not at once), its own session's close not waiting for it, whether the call
// comes before the stop's closes start or after (Redis: after its claims, its session's close already
// draining). With a stop that closes no session (Redis onStop 'keep'), the call does not wait for the
// stop's drain, which waits for that very request. Session time stands still: only a wait for the caller
// itself could hold these calls. The Redis store polls slowly here (pollIntervalMs 10 s): a drain must
// be woken when its caller is found to be inside, not found so at its next poll.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type SessionError } from '../src/index.js';
import { engineWithErrors, eventually } from './helpers.js';
import { twoDevices } from './devices-support.js';
import { storeChoices } from './store-choices.js';

type Vars = { device?: string };

for (const [name, choose] of storeChoices({ pollIntervalMs: 10_000 })) {
  test(`${name}: a request calling stop() again resolves once another session's running request has left and been hooked, its own session hooked meanwhile`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const hooks: string[] = [];
    const { engine, errors } = engineWithErrors<Vars>({ ...choice.options, clock, closeTimeoutMs: 10_000, init: () => ({}), onClose: (proc, reason) => { hooks.push(`${String(proc.vars.device)} ${reason}`); } });
    try {
      const { laptop, phone } = await twoDevices(engine);
      const whole = engine.stop();
      let hooksWhenReturned: string[] | undefined;
      const fromLaptop = laptop.run(() => engine.stop()).then(() => { hooksWhenReturned = [...hooks]; });
      assert.ok(await eventually(() => hooks.includes('laptop shutdown'), 3_000), `the laptop's session closed without waiting for its request (${hooks.join(', ')})`);
      assert.equal(await eventually(() => hooksWhenReturned !== undefined, 300), false, 'the call waits for the phone\'s close, whose request still runs');
      phone.release();
      assert.ok(await eventually(() => hooksWhenReturned !== undefined, 3_000), 'the call returned once the phone\'s close ended');
      assert.deepEqual([...hooksWhenReturned!].sort(), ['laptop shutdown', 'phone shutdown']);
      laptop.release();
      await Promise.all([fromLaptop, whole]);
      assert.deepEqual(errors.map((e: SessionError) => e.code), [], 'nothing timed out');
    } finally {
      clock.advance(60_000);
      await engine.stop();
    }
  });

  test(`${name}: a request calling stop() again once the stop's closes have started (an idle session hooked): its own session's close does not wait for it, the call returns once that close has ended`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const hooks: string[] = [];
    const { engine, errors } = engineWithErrors<Vars>({ ...choice.options, clock, closeTimeoutMs: 10_000, init: () => ({}), onClose: (proc, reason) => { hooks.push(`${String(proc.vars.device)} ${reason}`); } });
    try {
      const tablet = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
      tablet.proc.vars.device = 'tablet';
      tablet.release();
      const laptop = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
      laptop.proc.vars.device = 'laptop';
      const whole = engine.stop();
      assert.ok(await eventually(() => hooks.includes('tablet shutdown'), 3_000), `the stop's closes started (${hooks.join(', ')})`);
      let hooksWhenReturned: string[] | undefined;
      const fromLaptop = laptop.run(() => engine.stop()).then(() => { hooksWhenReturned = [...hooks]; });
      assert.ok(await eventually(() => hooksWhenReturned !== undefined, 3_000), `the call returned without session time passing (${hooks.join(', ')})`);
      assert.deepEqual([...hooksWhenReturned!].sort(), ['laptop shutdown', 'tablet shutdown'], 'its own session was hooked before the call returned');
      laptop.release();
      await Promise.all([fromLaptop, whole]);
      assert.deepEqual(errors.map((e: SessionError) => e.code), [], 'nothing timed out');
    } finally {
      clock.advance(60_000);
      await engine.stop();
    }
  });
}

// Redis only: the memory store's stop always closes the sessions, its caller's own without waiting for it.
for (const [name, choose] of storeChoices({ onStop: 'keep' }).filter(([n]) => n === 'Redis store')) {
  test(`${name} (onStop 'keep'): a request calling stop() again returns while the stop's drain waits for that request; the stop ends once it leaves`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const { engine, errors } = engineWithErrors<Vars>({ ...choice.options, clock, closeTimeoutMs: 10_000, init: () => ({}) });
    try {
      const laptop = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
      let stopped = false;
      const whole = engine.stop().then(() => { stopped = true; });
      let returned = false;
      const fromLaptop = laptop.run(() => engine.stop()).then(() => { returned = true; });
      assert.ok(await eventually(() => returned, 3_000), 'the call returned without session time passing');
      assert.equal(stopped, false, 'the stop still waits for the request');
      laptop.release();
      assert.ok(await eventually(() => stopped, 3_000), 'the stop ended once the request left');
      await Promise.all([fromLaptop, whole]);
      assert.deepEqual(errors.map((e: SessionError) => e.code), [], 'nothing timed out');
    } finally {
      clock.advance(60_000);
      await engine.stop();
    }
  });
}
