// 'none' mode and maxConcurrentProcesses, on both stores: its throw-away processes count against the
// limit (503 past it; on Redis per node, docs/redis.md), and sessions left from before a switch to 'none'
// (which no request reaches any more) do not shut every request out until they time out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type RequestLease } from '../src/index.js';
import { storeChoices } from './store-choices.js';

const IP = '127.0.0.1';

for (const [name, storeFor] of storeChoices()) {
  test(`${name}: 'none'-mode requests running at once are bounded by maxConcurrentProcesses: one more gets 503 ERR_SESSION_PROCESS_LIMIT`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const engine = new SessionEngine({ mode: 'none', maxConcurrentProcesses: 10, ...choice.options });
    const held: RequestLease<Record<string, unknown>>[] = [];
    try {
      for (let i = 0; i < 10; i++) held.push(await engine.acquire({ sessionId: undefined, ip: IP }));
      // A lease given anyway is kept to be released, so the failure is this assertion, not a stop() waiting for it.
      const refused = await engine.acquire({ sessionId: undefined, ip: IP }).then((lease) => { held.push(lease); return undefined; }, (error: unknown) => error);
      assert.equal((refused as { code?: string } | undefined)?.code, 'ERR_SESSION_PROCESS_LIMIT', `${held.length} 'none'-mode requests run at once under maxConcurrentProcesses 10`);
      assert.equal((refused as { httpStatus?: number }).httpStatus, 503);
      assert.equal(engine.stats().rejected.processLimit, 1);
      held.pop()!.release();
      const next = await engine.acquire({ sessionId: undefined, ip: IP });
      next.release();
    } finally {
      for (const lease of held) lease.release();
      await engine.stop();
    }
  });

  test(`${name}: switched to 'none' while idle sessions hold every process place, a request is still served (not 503 until they time out)`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const engine = new SessionEngine({ clock: new ManualClock(), maxConcurrentProcesses: 10, ...choice.options });
    try {
      for (let i = 0; i < 10; i++) (await engine.acquire({ sessionId: undefined, ip: IP })).release();
      engine.setOption('mode', 'none');
      const lease = await engine.acquire({ sessionId: undefined, ip: IP });
      assert.equal(lease.sessionId, '', 'a throw-away process');
      lease.release();
    } finally {
      await engine.stop();
    }
  });
}
