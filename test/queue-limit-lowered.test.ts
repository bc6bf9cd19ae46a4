// maxQueuedRequests lowered at run time bounds the requests that come after: the requests already
// waiting in the session's queue keep their place and run in turn, on both stores (as processesPerSession
// and maxConcurrentProcesses changed at run time never drop a waiting request).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SessionEngine } from '../src/index.js';
import { eventually, settle } from './helpers.js';
import { track } from './engine-harness.js';
import { storeChoices } from './store-choices.js';

const IP = '127.0.0.1';

for (const [name, storeFor] of storeChoices({ pollIntervalMs: 5 })) {
  test(`${name}: maxQueuedRequests lowered while three requests wait: those three still run, in turn; only a newcomer gets 503 ERR_SESSION_QUEUE_FULL`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const engine = new SessionEngine<{ n: number }>({ init: () => ({ n: 0 }), ...choice.options });
    try {
      const first = await engine.acquire({ sessionId: undefined, ip: IP });
      const id = first.sessionId;
      const waiting = [0, 1, 2].map(() => track(engine.acquire({ sessionId: id, ip: IP })));
      await settle(50);
      engine.setOption('maxQueuedRequests', 0);
      await assert.rejects(engine.acquire({ sessionId: id, ip: IP }), { code: 'ERR_SESSION_QUEUE_FULL' });
      first.release();
      for (const [i, w] of waiting.entries()) {
        assert.ok(await eventually(() => w.settled, 5_000), `waiter ${i} is served`);
        if (w.error !== undefined) throw w.error;
        assert.equal(w.value!.sessionId, id);
        w.value!.proc.vars.n += 1;
        w.value!.release();
      }
      engine.setOption('maxQueuedRequests', 16); // a release lands on Redis a round trip later: let this one wait for it
      const last = await engine.acquire({ sessionId: id, ip: IP });
      assert.equal(last.proc.vars.n, 3, 'each waiter ran in the session');
      last.release();
    } finally {
      await engine.stop();
    }
  });
}
