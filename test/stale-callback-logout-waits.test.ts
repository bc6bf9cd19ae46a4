// A callback that outlived its request (a promise chain left running) and logs out its session while a
// later request of that session runs, the session's close already under way from outside: it is no
// logout from inside that later request, so the close still waits for that request before the hook runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type SessionError } from '../src/index.js';
import { deferred, engineWithErrors, eventually } from './helpers.js';
import { storeChoices } from './store-choices.js';

type Vars = { n?: number };

for (const [name, choose] of storeChoices()) {
  test(`${name}: a left-over callback of an earlier request awaiting its session's close, already under way: the close still waits for the request running now`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const hooks: number[] = [];
    const { engine, errors } = engineWithErrors<Vars>({ ...choice.options, clock, closeTimeoutMs: 10_000, init: () => ({}), onClose: (proc) => { hooks.push(proc.vars.n ?? 0); } });
    try {
      const first = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
      const id = first.sessionId;
      first.proc.vars.n = 1;
      const later = deferred();
      const leftOver = first.run(() => later.promise.then(() => engine.closeSession(id)));
      first.release();
      const second = await engine.acquire({ sessionId: id, ip: '127.0.0.1' });
      second.proc.vars.n = 2;
      const fromOutside = engine.closeSession(id);
      later.resolve();
      assert.equal(await eventually(() => hooks.length > 0, 300), false, `the close waits for the running request (${hooks.join(', ')})`);
      second.proc.vars.n = 3;
      second.release();
      assert.equal(await fromOutside, true);
      assert.equal(await leftOver, true);
      assert.deepEqual(hooks, [3], 'hooked once, with what the running request left');
      assert.deepEqual(errors.map((e: SessionError) => e.code), []);
    } finally {
      clock.advance(60_000);
      await engine.stop();
    }
  });
}
