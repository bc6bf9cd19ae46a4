// A request that STARTS the close of another session without awaiting it (fire and forget) and goes on
// working in its own context waits for nothing: there is no wait-for cycle when the other session's hook
// then closes this request's session. The rule stays: a session's hook sees its context only after its
// running request left (here: once the request released), never while the request still works in it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../src/index.js';
import { deferred, engineWithErrors, eventually, settle } from './helpers.js';

test('Memory store: a request that fire-and-forgets closeSession of a device whose hook logs out every device is not treated as waiting inside: its hook runs after it left', { timeout: 20_000 }, async () => {
  const clock = new ManualClock();
  const devices = new Set<string>();
  const hooks: string[] = [];
  let laptopReleased = false;
  const { engine } = engineWithErrors<{ device?: string }>({
    clock, closeTimeoutMs: 10_000, init: () => ({}),
    onClose: async (proc) => {
      hooks.push(`${String(proc.vars.device)} (laptop request released: ${laptopReleased})`);
      const own = engine.currentSessionId();
      for (const other of [...devices]) if (other !== own) await engine.closeSession(other);
      devices.delete(own);
    },
  });
  const gate = deferred();
  try {
    const phone = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
    phone.proc.vars.device = 'phone';
    devices.add(phone.sessionId);
    phone.release();
    const laptop = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
    laptop.proc.vars.device = 'laptop';
    devices.add(laptop.sessionId);
    const work = laptop.run(async () => {
      void engine.closeSession(phone.sessionId); // not awaited: this request waits for nothing
      await gate.promise;                        // still working in its context
      laptop.proc.vars.device = 'laptop (work saved)';
    }).then(() => { laptopReleased = true; laptop.release(); });
    assert.ok(await eventually(() => hooks.length >= 1, 3_000), 'the phone\'s hook ran');
    await settle();
    assert.deepEqual(hooks, ['phone (laptop request released: false)'], 'the laptop\'s hook must wait for its request to leave');
    gate.resolve();
    await work;
    assert.ok(await eventually(() => hooks.length === 2, 3_000), 'the laptop\'s hook ran after its request');
    assert.equal(hooks[1], 'laptop (work saved) (laptop request released: true)');
  } finally {
    gate.resolve();
    clock.advance(60_000);
    await engine.stop();
  }
});
