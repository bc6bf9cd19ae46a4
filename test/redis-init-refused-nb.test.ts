// A request whose init outlasted its session's close is refused (ERR_SESSION_CLOSED): the entry its
// enter made in its node's running set (P nb:<node>) goes with it, as a release's does. Kept, it stays
// for as long as the node lives (each heartbeat renews the set), one per such request, and every
// repair and the node's takeover walk it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../src/index.js';
import { track } from './engine-harness.js';
import { deferred, eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { IP, node, settledAsTimePasses, stopAll } from './redis-crossing.js';

test('a request refused because its init outlasted the close leaves nothing in its node\'s running set (P nb:<node>)', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const gate = deferred();
  let initStarted = false;
  const x = await node(r, clock, { init: async () => { initStarted = true; await gate.promise; return {}; } });
  let closing: ReturnType<typeof track<boolean>> | undefined;
  try {
    const entering = track(x.engine.acquire({ sessionId: undefined, ip: IP }));
    assert.ok(await eventually(() => initStarted, 5_000), 'init runs');
    const id = (await r.redis.zrange(`${r.prefix}open`, '0', '-1'))[0]!;
    closing = track(x.engine.closeSession(id));
    assert.ok(await settledAsTimePasses(clock, closing), 'the close gave up on the init and ended');
    gate.resolve();
    assert.ok(await eventually(() => entering.settled, 5_000));
    assert.equal((entering.error as { code?: string } | undefined)?.code, 'ERR_SESSION_CLOSED');
    const [nodeId] = await r.redis.smembers(`${r.prefix}nodes`);
    const running = async (): Promise<string[]> => r.redis.smembers(`${r.prefix}nb:${nodeId}`);
    await eventually(async () => (await running()).length === 0, 1_000);
    assert.deepEqual(await running(), [], `node ${nodeId} still lists the refused request's process as running`);
  } finally {
    gate.resolve();
    await stopAll(clock, [], closing, x);
  }
});
