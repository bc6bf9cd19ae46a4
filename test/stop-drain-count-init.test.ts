// stop() gives up on a request whose first (asynchronous) init still runs: the drain timeout it reports
// counts that request once, on both stores (the Redis node counted it as a request being acquired and
// as a process running in its session).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type SessionError } from '../src/index.js';
import { deferred, eventually } from './helpers.js';
import { storeChoices } from './store-choices.js';
import { engineOn, IP, type Vars } from './init-failure-support.js';

for (const [name, storeFor] of storeChoices()) {
  for (const alsoRunning of [false, true]) {
    test(`${name}: the drain timeout of a stop counts a request whose first init still runs once${alsoRunning ? ' (beside a running request)' : ''}`, { timeout: 20_000 }, async (t) => {
      const choice = await storeFor(t);
      if (choice === 'skip') return;
      const clock = new ManualClock();
      const initDone = deferred<Vars>();
      let inits = 0;
      const { engine } = engineOn(choice, { clock, closeTimeoutMs: 200, init: () => (++inits === 1 && alsoRunning ? {} : initDone.promise) });
      const drains: string[] = [];
      engine.on('error', (e: SessionError) => { if (e.code === 'ERR_SESSION_DRAIN_TIMEOUT') drains.push(e.message); });
      const running = alsoRunning ? await engine.acquire({ sessionId: undefined, ip: IP }) : undefined;
      const outcome = engine.acquire({ sessionId: undefined, ip: IP }).then((lease) => { lease.release(); return 'ran'; }, (error: { code?: string }) => error.code);
      assert.ok(await eventually(() => engine.sessions().length === (alsoRunning ? 2 : 1), 5_000), 'init runs');
      let stopped = false;
      void engine.stop().then(() => { stopped = true; });
      assert.ok(await eventually(() => { clock.advance(100); return stopped; }, 5_000), 'the stop ended without init');
      initDone.resolve({ n: 1 });
      await outcome;
      running?.release();
      assert.ok(drains.length > 0, 'the drain timed out');
      const expected = alsoRunning ? 2 : 1;
      // Each report names how much still ran: a session's close names its own processes, the node's stop all of them.
      const counts = drains.filter((m) => /\d+ \w+\(s\)/.test(m)).map((m) => Number(/(\d+) \w+\(s\)/.exec(m)![1]));
      assert.ok(counts.every((n) => n >= 1 && n <= expected), `reported: ${JSON.stringify(drains)}`);
      const total = drains.filter((m) => m.includes('request(s)'));
      for (const m of total) assert.equal(Number(/(\d+) request\(s\)/.exec(m)?.[1]), expected, `the node's drain counts each request once: ${m}`);
    });
  }
}
