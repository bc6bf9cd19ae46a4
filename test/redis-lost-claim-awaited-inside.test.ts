// closeSession awaited from a request (the call's promise then records the wait, src/close-waits.ts)
// fails as it does from outside when the claim's reply is lost: ERR_SESSION_STORE_UNAVAILABLE, not a
// quiet `false`, and the node's next sweeps run that close (its hook once). See redis-lost-replies.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { eventually } from './helpers.js';
import { idleSession, loseNextReply, withNode } from './lost-replies-support.js';
import { IP } from './redis-crossing.js';

test('a claim whose reply is lost, the close awaited from a request of another session: the await rejects (503), the close then runs once', { timeout: 20_000 }, (t) => withNode(t, async (r, x, clock) => {
  const a = await idleSession(r, x);
  const caller = await x.engine.acquire({ sessionId: undefined, ip: IP });
  try {
    loseNextReply(x.client, 'lwsClaim');
    await assert.rejects(caller.run(async () => await x.engine.closeSession(a.sessionId)), { code: 'ERR_SESSION_STORE_UNAVAILABLE' });
  } finally {
    caller.release();
  }
  clock.advance(1_000);
  assert.ok(await eventually(async () => (await r.redis.exists(`${r.prefix}s:${a.sessionId}`)) === 0, 5_000), 'the close was run');
  assert.deepEqual(x.hooked, [a.proc.processId]);
}));
