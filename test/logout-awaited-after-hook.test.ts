// A request that logs out its own session and awaits the call: the close does not wait for that request
// (4D runs it in the calling process), and the call returns once the close has ended, the session's hook
// run with the request's context. The wait is on the caller's own session, whose drain leaves the caller
// out: it closes no cycle, so it is not ended early.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type SessionError } from '../src/index.js';
import { engineWithErrors, eventually } from './helpers.js';
import { storeChoices } from './store-choices.js';

type Vars = { device?: string };

for (const [name, choose] of storeChoices()) {
  for (const other of ['alone', 'beside another running request of the session'] as const) {
    test(`${name}: a request awaiting the close of its own session (${other}): the call returns after the hook ran with the request's vars`, { timeout: 20_000 }, async (t) => {
      const choice = await choose(t);
      if (choice === 'skip') return;
      const clock = new ManualClock();
      const hooks: string[] = [];
      const { engine, errors } = engineWithErrors<Vars>({ ...choice.options, clock, closeTimeoutMs: 10_000, processesPerSession: 2, init: () => ({}), onClose: (proc, reason) => { hooks.push(`${String(proc.vars.device)} ${reason}`); } });
      try {
        const laptop = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
        laptop.proc.vars.device = 'laptop';
        const id = laptop.sessionId;
        const second = other === 'alone' ? undefined : await engine.acquire({ sessionId: id, ip: '127.0.0.1' });
        if (second !== undefined) second.proc.vars.device = 'tab';
        let hooksWhenReturned: string[] | undefined;
        const logout = laptop.run(async () => await engine.closeSession(id)).then((closed) => { hooksWhenReturned = [...hooks]; return closed; });
        if (second !== undefined) {
          assert.equal(await eventually(() => hooksWhenReturned !== undefined, 300), false, 'the close waits for the other request');
          second.release();
        }
        assert.ok(await eventually(() => hooksWhenReturned !== undefined, 3_000), `the call returned without session time passing (${hooks.join(', ')})`);
        assert.equal(await logout, true);
        assert.ok(hooksWhenReturned!.includes('laptop closed'), `the caller's hook ran before the call returned (${hooksWhenReturned!.join(', ')})`);
        laptop.release();
        assert.deepEqual(errors.map((e: SessionError) => e.code), []);
      } finally {
        clock.advance(60_000);
        await engine.stop();
      }
    });
  }
}
