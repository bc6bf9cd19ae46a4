// stop() called again while a stop is under way, from a request, task or hook: the caller's own
// session's close does not wait for it (as for the first caller: its hook runs while the call waits,
// 4D running the close in the calling process), and the call does not wait for the caller's own close
// from its hook. Awaiting the whole stop would wait for the caller itself, until closeTimeoutMs (session
// time stands still here: only such a wait can hold the stop).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type SessionError } from '../src/index.js';
import { deferred, engineWithErrors, eventually, settle } from './helpers.js';
import { twoDevices } from './devices-support.js';
import { storeChoices } from './store-choices.js';

type Vars = { device?: string };

for (const [name, choose] of storeChoices()) {
  test(`${name}: two requests of two sessions each awaiting stop(): both go on, each session hooked once with its vars, the stop ends without waiting closeTimeoutMs`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const hooks: string[] = [];
    const { engine, errors } = engineWithErrors<Vars>({ ...choice.options, clock, closeTimeoutMs: 10_000, init: () => ({}), onClose: (proc, reason) => { hooks.push(`${String(proc.vars.device)} ${reason}`); } });
    let stopped = false;
    try {
      const { laptop, phone } = await twoDevices(engine);
      const done: string[] = [];
      const fromLaptop = laptop.run(() => engine.stop()).then(() => { done.push('laptop'); laptop.release(); });
      const fromPhone = phone.run(() => engine.stop()).then(() => { done.push('phone'); phone.release(); });
      const whole = engine.stop().then(() => { stopped = true; });
      assert.ok(await eventually(() => done.length === 2 && stopped, 3_000), `both requests and the stop ended without session time passing (${done.join(', ')}; stopped ${stopped})`);
      await Promise.all([fromLaptop, fromPhone, whole]);
      assert.deepEqual([...hooks].sort(), ['laptop shutdown', 'phone shutdown']);
      assert.deepEqual(errors.map((e: SessionError) => e.code), [], 'nothing timed out');
    } finally {
      clock.advance(60_000);
      await engine.stop();
    }
  });

  test(`${name}: hooks that await stop() during a stop from outside: each goes on at once, the stop ends without a hook timing out`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const hooks: string[] = [];
    const { engine, errors } = engineWithErrors<Vars>({
      ...choice.options, clock, closeTimeoutMs: 10_000, init: () => ({}),
      onClose: async (proc) => {
        hooks.push(`${String(proc.vars.device)} began`);
        await engine.stop();
        hooks.push(`${String(proc.vars.device)} ended`);
      },
    });
    let stopped = false;
    try {
      for (const device of ['laptop', 'phone']) {
        const lease = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
        lease.proc.vars.device = device;
        lease.release();
      }
      const whole = engine.stop().then(() => { stopped = true; });
      assert.ok(await eventually(() => stopped, 3_000), `the stop ended without session time passing (${hooks.join(', ')})`);
      await whole;
      assert.deepEqual([...hooks].sort(), ['laptop began', 'laptop ended', 'phone began', 'phone ended']);
      assert.deepEqual(errors.map((e: SessionError) => e.code), [], 'no hook timed out');
    } finally {
      clock.advance(60_000);
      await engine.stop();
    }
  });
}

for (const [name, choose] of storeChoices()) {
  test(`${name}: a stop from outside ends only once a request that called stop() again has ended (its session's close did not wait for it), so an application exiting after it cuts no answer`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const hooks: string[] = [];
    const { engine, errors } = engineWithErrors<Vars>({ ...choice.options, clock, closeTimeoutMs: 10_000, init: () => ({}), onClose: (proc) => { hooks.push(String(proc.vars.device)); } });
    const gate = deferred();
    try {
      const lease = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
      lease.proc.vars.device = 'laptop';
      let outerEnded = false;
      const outer = engine.stop().then(() => { outerEnded = true; });
      let innerReturned = false;
      const work = lease.run(async () => {
        await engine.stop();
        innerReturned = true;
        await gate.promise; // still answering
      }).then(() => lease.release());
      assert.ok(await eventually(() => innerReturned, 5_000), 'the request\'s own stop() returned once the closes ended');
      assert.deepEqual(hooks, ['laptop'], 'its session closed (hooked while it waited)');
      await settle(20);
      assert.equal(outerEnded, false, 'the stop from outside still waits for that request');
      gate.resolve();
      await work;
      assert.ok(await eventually(() => outerEnded, 5_000), 'then it ends, without session time passing');
      await outer;
      assert.deepEqual(errors.map((e: SessionError) => e.code), []);
    } finally {
      gate.resolve();
      clock.advance(60_000);
      await engine.stop();
    }
  });
}
