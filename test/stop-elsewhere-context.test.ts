// A flow that uses engines one after the other (a job loop calling lease.run, acquire with an init,
// closeSession with a hook) while each is stopped from elsewhere (another request, a timer) keeps none
// of their async contexts. On Node 24 AsyncLocalStorage is built on frames, and its run() gives the
// caller its store back by entering it again: without care the caller's flow went on in a frame holding
// the engine's storage, which the engine's release (disable(), from its own timer) never reached, and
// each later run() of any storage in that flow copied them all.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AsyncLocalStorage } from 'node:async_hooks';
import { queryObjects } from 'node:v8';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { SessionEngine } from '../src/index.js';
import { collected, eventually } from './helpers.js';

const ENGINES = 10;
const IP = '127.0.0.1';

async function storagesAfterGc(): Promise<number> {
  await collected(new WeakRef({}), 200);
  return queryObjects(AsyncLocalStorage, { format: 'count' }) as number;
}

test('a flow that used engines stopped from elsewhere keeps none of their async contexts', { timeout: 30_000 }, async (t) => {
  // Another flow, set up beforehand (an eviction or shutdown timer): it stops the engines handed to it.
  const toStop: Array<{ engine: SessionEngine; done: () => void }> = [];
  const stopper = setInterval(() => {
    for (const { engine, done } of toStop.splice(0)) void engine.stop().then(done);
  }, 1);
  t.after(() => clearInterval(stopper));
  const before = await storagesAfterGc();
  for (let i = 0; i < ENGINES; i++) {
    const engine = new SessionEngine({ init: () => ({ n: i }), onClose: () => {} });
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    assert.equal(lease.run(() => engine.currentSessionId()), lease.sessionId);
    lease.release();
    await engine.closeSession(lease.sessionId);
    await new Promise<void>((done) => { toStop.push({ engine, done }); });
    await nextTurn();
  }
  assert.ok(await eventually(async () => (await storagesAfterGc()) - before <= 1, 5_000),
    `${ENGINES} engines used here and stopped elsewhere: ${(await storagesAfterGc()) - before} AsyncLocalStorage instances still held`);
});
