// Replies a node never reads (the connection cut after Redis ran the script, before its answer came
// back): the node itself repairs what they left, at its next sweeps, instead of waiting to die. A lost
// enter's process is freed with the state last saved (its session was wedged for as long as the node
// lived); a lost claim's close is run, its hook once. Work the node runs meanwhile is never touched.
// A lost reply is made by wrapping the store's script on a client the test owns: the script runs in
// Redis, then the call fails as a cut connection makes it fail.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../src/index.js';
import { eventually } from './helpers.js';
import { idleInRedis, IP, node, stopAll, wrapScript, type Script } from './redis-crossing.js';
import { redisForTest } from './redis-support.js';


/** The next call of `name` runs in Redis, then fails as if the connection had been cut before its reply. */
function loseNextReply(client: Parameters<typeof wrapScript>[0], name: string): void {
  let lost = false;
  wrapScript(client, name, (original: Script) => async (...args) => {
    const reply = await original(...args);
    if (lost) return reply;
    lost = true;
    throw new Error('Connection is closed.');
  });
}

/** Moves session time past the repair's grace (nodeLeaseMs, 10 s by default), a second at a time (each second a sweep). */
async function pastTheGrace(clock: ManualClock): Promise<void> {
  for (let i = 0; i < 12; i++) {
    clock.advance(1_000);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

test("an enter whose reply is lost: the request gets 503, the process it took is freed by the node's next sweeps (the session is served again with its state); a request running meanwhile keeps its process", { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const x = await node(r, clock);
  const running = await x.engine.acquire({ sessionId: undefined, ip: IP });
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    a.proc.vars.n = 1;
    a.release();
    assert.ok(await idleInRedis(r, a.sessionId));
    loseNextReply(x.client, 'lwsEnterManyBuffer');
    await assert.rejects(x.engine.acquire({ sessionId: a.sessionId, ip: IP }), { code: 'ERR_SESSION_STORE_UNAVAILABLE' });
    const pid = a.proc.processId;
    assert.notEqual(await r.redis.hget(`${r.prefix}s:${a.sessionId}`, `b:${pid}`), '0', 'the lost enter took the process');
    await pastTheGrace(clock);
    assert.ok(await eventually(async () => (await r.redis.hget(`${r.prefix}s:${a.sessionId}`, `b:${pid}`)) === '0', 5_000), 'freed by the repair');
    const again = await x.engine.acquire({ sessionId: a.sessionId, ip: IP });
    assert.equal(again.sessionId, a.sessionId);
    assert.equal(again.proc.vars.n, 1, 'with the state last saved');
    again.release();
    // The request that ran through it all kept its process, and its release lands.
    assert.notEqual(await r.redis.hget(`${r.prefix}s:${running.sessionId}`, `b:${running.proc.processId}`), '0');
    running.proc.vars.n = 7;
    running.release();
    const next = await x.engine.acquire({ sessionId: running.sessionId, ip: IP });
    assert.equal(next.proc.vars.n, 7);
    next.release();
    assert.deepEqual(x.hooked, []);
  } finally {
    running.release();
    await stopAll(clock, [], undefined, x);
  }
});

test("a claim whose reply is lost: closeSession fails (503), and the node's next sweeps run that close: its hook once, the session gone", { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const x = await node(r, clock);
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    a.release();
    assert.ok(await idleInRedis(r, a.sessionId));
    loseNextReply(x.client, 'lwsClaim');
    await assert.rejects(x.engine.closeSession(a.sessionId), { code: 'ERR_SESSION_STORE_UNAVAILABLE' });
    assert.equal(await r.redis.hget(`${r.prefix}s:${a.sessionId}`, 'st'), 'c', 'the lost claim landed');
    clock.advance(1_000);
    assert.ok(await eventually(async () => (await r.redis.exists(`${r.prefix}s:${a.sessionId}`)) === 0, 5_000), 'the close was run');
    assert.deepEqual(x.hooked, [a.proc.processId]);
  } finally {
    await stopAll(clock, [], undefined, x);
  }
});
