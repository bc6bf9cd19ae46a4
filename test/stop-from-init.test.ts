// stop() awaited from an asynchronous init (a new session's, or an extra process's): the stop does not
// wait for its caller, so neither for the acquire that runs that init, which is its caller's own work
// (on Redis the acquire in flight was counted as work to drain: the stop waited closeTimeoutMs for its
// own caller). The request is then refused (503), the stop ends without session time passing. Also
// when the init calls stop() again during a stop from outside.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type RequestLease, type SessionError } from '../src/index.js';
import { engineWithErrors, eventually } from './helpers.js';
import { storeChoices } from './store-choices.js';

for (const [name, choose] of storeChoices()) {
  for (const first of [true, false]) {
    for (const extra of [false, true]) {
      test(`${name}: an async init of ${extra ? 'an extra process' : 'a new session'} that awaits stop() ${first ? '(the first call)' : 'during a stop from outside'}: the stop ends without waiting for its caller, the request is refused`, { timeout: 20_000 }, async (t) => {
        const choice = await choose(t);
        if (choice === 'skip') return;
        const clock = new ManualClock();
        let open!: () => void;
        const gate = new Promise<void>((resolve) => { open = resolve; });
        let armed = false;
        let initStop = 'not called';
        const { engine, errors } = engineWithErrors({
          ...choice.options, clock, processesPerSession: 2, closeTimeoutMs: 10_000,
          init: async () => {
            if (!armed) return {};
            initStop = 'init runs';
            await gate;
            initStop = 'called';
            await engine.stop();
            initStop = 'returned';
            return {};
          },
        });
        try {
          let holder: RequestLease<Record<string, unknown>> | undefined;
          if (extra) holder = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
          armed = true;
          const acquiring = engine.acquire({ sessionId: holder?.sessionId, ip: '127.0.0.1' }).then((lease) => { lease.release(); return 'served'; }, (error: SessionError) => error.code);
          assert.ok(await eventually(() => initStop === 'init runs', 2_000), 'its init runs');
          let stopped = false;
          const outside = first ? undefined : engine.stop().then(() => { stopped = true; });
          open();
          holder?.release();
          assert.ok(await eventually(() => initStop === 'returned' && (first || stopped), 3_000), `init's stop() ${initStop}${first ? '' : `, the stop from outside ${stopped ? 'ended' : 'still waiting'}`}`);
          assert.notEqual(await acquiring, 'served', 'the request is refused');
          await outside;
          assert.deepEqual(errors.map((e) => e.code), [], 'nothing timed out');
        } finally {
          clock.advance(60_000);
          await engine.stop();
        }
      });
    }
  }
}
