// stop() awaited from the hook of a close under way (closeSession from outside, no stop before it): the
// stop does not wait for its caller's own close (it would wait on itself), but that close still ends
// once the hook returns: its teardown done, closeSession resolving true, nothing reported, as on the
// memory store. On Redis the node must not leave (closing its clients) before that close has ended.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type SessionError } from '../src/index.js';
import { engineWithErrors, eventually } from './helpers.js';
import { storeChoices } from './store-choices.js';

type Vars = { device?: string };

for (const [name, choose] of storeChoices()) {
  for (const others of [false, true]) {
    test(`${name}: a hook that awaits stop() (the first one) during a closeSession from outside: that close ends, closeSession resolves true${others ? ', the other sessions\' hooks calling stop() too' : ''}`, { timeout: 20_000 }, async (t) => {
      const choice = await choose(t);
      if (choice === 'skip') return;
      const clock = new ManualClock();
      const hooks: string[] = [];
      const { engine, errors } = engineWithErrors<Vars>({
        ...choice.options, clock, closeTimeoutMs: 10_000, init: () => ({}),
        onClose: async (proc, reason) => {
          hooks.push(`${String(proc.vars.device)} ${reason}`);
          if (proc.vars.device === 'laptop' || others) await engine.stop();
          hooks.push(`${String(proc.vars.device)} went on`);
        },
      });
      try {
        const ids: string[] = [];
        for (const device of ['laptop', 'phone']) {
          const lease = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
          lease.proc.vars.device = device;
          ids.push(lease.sessionId);
          lease.release();
        }
        let outcome = 'pending';
        const closing = engine.closeSession(ids[0]!).then((closed) => { outcome = String(closed); }, (error: Error) => { outcome = `rejected: ${error.message}`; });
        assert.ok(await eventually(() => outcome !== 'pending' && hooks.length === 4, 3_000), `closeSession ${outcome}; hooks ${hooks.join(', ')}`);
        await closing;
        assert.equal(outcome, 'true');
        assert.deepEqual([...hooks].sort(), ['laptop closed', 'laptop went on', 'phone shutdown', 'phone went on']);
        assert.deepEqual(errors.map((e: SessionError) => e.code), [], 'nothing reported');
        if (choice.redis !== undefined) {
          const { redis, prefix } = choice.redis;
          assert.ok(await eventually(async () => (await redis.exists(`${prefix}s:${ids[0]!}`)) === 0, 2_000), 'the closed session left Redis');
        }
      } finally {
        clock.advance(60_000);
        await engine.stop();
      }
    });
  }
}
