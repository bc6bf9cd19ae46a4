// A node stalled (GC or VM pause, a cut from Redis) just past one lease: its lease key has expired, but
// no sweep would take it for dead yet (README "Failure modes": "A node stalls ... for two leases or more:
// the others take it for dead"). The last other node stops (onStop 'auto') meanwhile: its stop closes
// every session ('shutdown') and its close waits, closeTimeoutMs at most, for the request the stalled
// node runs, whose changes then reach the hook. CLAIM_ALL's first batch must not take the stalled node
// for dead on its missing key alone: that frees its process under the running request, whose save is
// then fenced (ERR_SESSION_WRITE_FENCED, its changes lost) while the node was never gone two leases.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { eventually } from './helpers.js';
import { IP } from './redis-crossing.js';
import { LEASE_MS, realDelay, withTwoNodes } from './redis-stall.js';

test('redis: a last node\'s stop does not take a node stalled for just one lease for dead: the request running there saves, unfenced', { timeout: 20_000 }, (t) => withTwoNodes(t, async ({ r, x, y }) => {
  const running = await x.engine.acquire({ sessionId: undefined, ip: IP });
  const xNode = (await r.redis.hget(`${r.prefix}s:${running.sessionId}`, `o:${running.proc.processId}`))!;
  running.proc.vars.n = 1;
  // x stalls; its lease key expires (removed here: no sweep has seen it missing yet).
  x.stall();
  await r.redis.del(`${r.prefix}node:${xNode}`);
  // y, alone as far as it can tell, stops: the whole deployment goes down.
  let stopped = false;
  const stopping = y.engine.stop().finally(() => { stopped = true; });
  await realDelay(LEASE_MS);
  // x wakes (well within y's closeTimeoutMs) and its request ends.
  x.wake();
  running.release();
  await realDelay(LEASE_MS);
  assert.ok(await eventually(() => { y.clock.advance(1_000); return stopped; }, 10_000), "y's stop ended");
  await stopping;
  const fenced = x.errors.filter((e) => e.code === 'ERR_SESSION_WRITE_FENCED');
  assert.deepEqual(fenced.map((e) => e.message), [], "x's request's save is not fenced");
}));
