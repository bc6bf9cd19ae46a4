// WEB LEGACY CLOSE SESSION from an engine that has served no request yet (a node just started, an admin
// script that makes an engine to log a user out): closeSession(id) works from any node, `true` once
// closed, `false` for an unknown id (README, API). On Redis the node's store is still connecting then:
// the call waits for the node's start, as a request does, instead of failing as if Redis were away.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type CloseReason, type SessionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { use4D } from '../src/compat-4d.js';
import { storeChoices } from './store-choices.js';

for (const [name, choose] of storeChoices()) {
  test(`${name}: WEB LEGACY CLOSE SESSION as an engine's first call answers false for an unknown id`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const engine = new SessionEngine({ clock, ...choice.options });
    const errors: SessionError[] = [];
    engine.on('error', (error) => errors.push(error));
    try {
      const { WEB_LEGACY_CLOSE_SESSION } = use4D(engine);
      assert.equal(await WEB_LEGACY_CLOSE_SESSION('0f8fad5b-d9cb-469f-a165-70867728950e'), false);
      assert.equal(await WEB_LEGACY_CLOSE_SESSION('not an id'), false);
      assert.deepEqual(errors.map((e) => e.code), []);
    } finally {
      clock.advance(60_000);
      await engine.stop();
    }
  });
}

test('Redis store: WEB LEGACY CLOSE SESSION from a node that has served no request yet closes a session another node serves (hook once)', { timeout: 20_000 }, async (t) => {
  const [, redisChoice] = storeChoices()[1]!;
  const serving = await redisChoice(t);
  if (serving === 'skip') return;
  const { url, prefix } = serving.redis!;
  const clock = new ManualClock();
  const hooks: Array<{ id: string; reason: CloseReason }> = [];
  const onClose = (proc: { sessionId: string }, reason: CloseReason): void => { hooks.push({ id: proc.sessionId, reason }); };
  const a = new SessionEngine({ clock, onClose, ...serving.options });
  let fresh: SessionEngine | undefined;
  try {
    const lease = await a.acquire({ sessionId: undefined, ip: '127.0.0.1' });
    lease.release();
    const id = lease.sessionId;
    // A second node on the same prefix, asked at once.
    fresh = new SessionEngine({ clock, onClose, store: createRedisStore({ url, prefix }) });
    assert.equal(await use4D(fresh).WEB_LEGACY_CLOSE_SESSION(id), true, 'closed from the new node');
    assert.deepEqual(hooks, [{ id, reason: 'closed' }]);
    assert.equal(await use4D(fresh).WEB_LEGACY_CLOSE_SESSION(id), false, 'closed already');
  } finally {
    clock.advance(60_000);
    await Promise.all([a.stop(), fresh?.stop()]);
  }
});
