// Stragglers on the Redis store (see test/redis-stragglers.test.ts): a node's closeSession joining another
// node's close resolves only once that close has ended, also across this node's stop(); a stop() waits
// for the closes this node claimed meanwhile, but never for itself (a stop() from a hook).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type RequestLease, type SessionEngineOptions } from '../src/index.js';
import { track } from './engine-harness.js';
import { deferred, eventually } from './helpers.js';
import { createRedisStore } from '../src/redis/index.js';
import { redisForTest, type RedisForTest } from './redis-support.js';
import { idleInRedis, IP, node, wrapScript, type Vars, closingInRedis } from './redis-crossing.js';

/** One node on Redis whose hook is `onClose` (its errors not collected), for the stop() tests below. */
async function engineOnRedis(r: RedisForTest, clock: ManualClock, onClose: NonNullable<SessionEngineOptions<Vars>['onClose']>): Promise<{ engine: SessionEngine<Vars>; client: Awaited<ReturnType<RedisForTest['client']>> }> {
  const client = await r.client();
  const engine = new SessionEngine<Vars>({
    clock, closeTimeoutMs: 10_000, processesPerSession: 1, onClose,
    store: createRedisStore({ redis: client, prefix: r.prefix, pollIntervalMs: 5, sweepIntervalMs: 1_000, onStop: 'keep' }),
  });
  engine.on('error', () => {});
  return { engine, client };
}

test('an outside closeSession on x joining y\'s close does not resolve true before that close has ended, x stopped meanwhile', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const yClock = new ManualClock();
  const x = await node(r, clock, { onStop: 'keep', processesPerSession: 2 });
  const y = await node(r, yClock, { onStop: 'keep', processesPerSession: 2 });
  let b: RequestLease<Vars> | undefined;
  let outside: ReturnType<typeof track<boolean>> | undefined;
  try {
    const first = await x.engine.acquire({ sessionId: undefined, ip: IP });
    const id = first.sessionId;
    first.release();
    b = await y.engine.acquire({ sessionId: id, ip: IP }); // busy on y: y's drain waits for it
    outside = track(y.engine.closeSession(id));
    assert.ok(await closingInRedis(r, id), 'y claimed the close');
    const joined = track(x.engine.closeSession(id)); // an admin call on x, outside any request
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(joined.settled, false, 'the join waits for y\'s close');
    const stopping = track(x.engine.stop());
    await eventually(() => joined.settled, 500);
    const keyLeft = await r.redis.exists(`${r.prefix}s:${id}`);
    assert.ok(!(joined.settled && joined.value === true && keyLeft === 1),
      `closeSession resolved ${String(joined.value)} while y's close is still under way (key st=${await r.redis.hget(`${r.prefix}s:${id}`, 'st')}; x stopped: ${stopping.settled})`);
    b.release();
    assert.ok(await eventually(() => outside!.settled && joined.settled, 5_000), 'y\'s close ended, the join returned');
    assert.equal(joined.value, true);
    assert.ok(await eventually(() => stopping.settled, 5_000), 'x stopped once the join returned');
  } finally {
    b?.release();
    yClock.advance(60_000);
    clock.advance(60_000);
    await y.engine.stop();
  }
});

test('a closeSession on x made together with x.stop(), joining y\'s close, does not resolve true before that close has ended', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const yClock = new ManualClock();
  const x = await node(r, clock, { onStop: 'keep', processesPerSession: 2 });
  const y = await node(r, yClock, { onStop: 'keep', processesPerSession: 2 });
  let b: RequestLease<Vars> | undefined;
  let outside: ReturnType<typeof track<boolean>> | undefined;
  try {
    const first = await x.engine.acquire({ sessionId: undefined, ip: IP });
    const id = first.sessionId;
    first.release();
    b = await y.engine.acquire({ sessionId: id, ip: IP }); // busy on y: y's drain waits for it
    outside = track(y.engine.closeSession(id));
    assert.ok(await closingInRedis(r, id), 'y claimed the close');
    // An admin shutdown script: closes a session and stops the node, concurrently.
    const stopping = track(x.engine.stop());
    const joined = track(x.engine.closeSession(id));
    await eventually(() => joined.settled, 500);
    const keyLeft = await r.redis.exists(`${r.prefix}s:${id}`);
    assert.ok(!(joined.settled && joined.value === true && keyLeft === 1),
      `closeSession resolved ${String(joined.value)} while y's close is still under way (x stopped: ${stopping.settled})`);
    b.release();
    assert.ok(await eventually(() => outside!.settled && joined.settled, 5_000), 'y\'s close ended, then the join returned');
    assert.equal(joined.value, true);
  } finally {
    b?.release();
    yClock.advance(60_000);
    clock.advance(60_000);
    await y.engine.stop();
    await x.engine.stop();
  }
});

test('stop() from the hook of a close x runs returns, while another closeSession of that session on x waits for it', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  let stopFromHook: ReturnType<typeof track<void>> | undefined;
  const { engine }: { engine: SessionEngine<Vars> } = await engineOnRedis(r, clock, async () => { const stopping = engine.stop(); stopFromHook = track(stopping); await stopping; });
  try {
    const a = await engine.acquire({ sessionId: undefined, ip: IP });
    const id = a.sessionId;
    a.release();
    assert.ok(await idleInRedis(r, id), 'its release landed');
    // An admin call and a logout of the same session, together: the first claim wins ('ok'), the second
    // is answered 'closing' and waits for the close (this node's own) to end.
    const first = track(engine.closeSession(id));
    const second = track(engine.closeSession(id));
    assert.ok(await eventually(() => stopFromHook !== undefined, 5_000), 'the hook ran and called stop()');
    const stopped = await eventually(() => stopFromHook!.settled, 2_000);
    assert.ok(stopped, `stop() from the hook still waiting (first settled ${first.settled}, second settled ${second.settled}; key left: ${await r.redis.exists(`${r.prefix}s:${id}`)})`);
  } finally {
    clock.advance(60_000);
    await engine.stop();
  }
});

test('stop() from the hook of x\'s close returns while a request handed over to that very close has ended', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  let stopFromHook: ReturnType<typeof track<void>> | undefined;
  const { engine }: { engine: SessionEngine<Vars> } = await engineOnRedis(r, clock, async () => { await new Promise((resolve) => setTimeout(resolve, 100)); const stopping = engine.stop(); stopFromHook = track(stopping); await stopping; });
  try {
    const a = await engine.acquire({ sessionId: undefined, ip: IP });
    const id = a.sessionId;
    const outside = track(engine.closeSession(id)); // claim sent first: 'ok'
    let logout: ReturnType<typeof track<boolean>> | undefined;
    a.run(() => { logout = track(engine.closeSession(engine.currentSessionId())); }); // answered 'closing'
    await new Promise((resolve) => setTimeout(resolve, 50));
    a.release();
    assert.ok(await eventually(() => stopFromHook !== undefined, 5_000), 'the hook ran and called stop()');
    const stopped = await eventually(() => stopFromHook!.settled, 2_000);
    assert.ok(stopped, `stop() from the hook still waiting (outside settled ${outside.settled}, logout settled ${logout?.settled}; key left: ${await r.redis.exists(`${r.prefix}s:${id}`)})`);
  } finally {
    clock.advance(60_000);
    await engine.stop();
  }
});

test('stop() waits for the close a closeSession claimed during the stop (reply read after settle() looked)', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const hooked: string[] = [];
  const { engine, client } = await engineOnRedis(r, clock, async (proc) => { await new Promise((resolve) => setTimeout(resolve, 200)); hooked.push(proc.processId); });
  try {
    const a = await engine.acquire({ sessionId: undefined, ip: IP });
    const id = a.sessionId;
    a.release();
    assert.ok(await idleInRedis(r, id), 'its release landed');
    const reply = deferred();
    const sent = deferred();
    wrapScript(client, 'lwsClaim', (claim) => async (...args) => { const answer = await claim(...args); sent.resolve(); await reply.promise; return answer; });
    const closing = track(engine.closeSession(id));
    await sent.promise; // claimed in Redis ('ok'), reply held
    const stopping = track(engine.stop());
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(stopping.settled, false, 'the stop waits for the claim in flight');
    reply.resolve();
    assert.ok(await eventually(() => stopping.settled, 5_000), 'stop resolved');
    const state = `closeSession settled ${closing.settled} (${String(closing.value)}, ${String((closing.error as Error | undefined)?.message)}), hooks ${hooked.length}, key left ${await r.redis.exists(`${r.prefix}s:${id}`)}`;
    assert.ok(closing.settled && closing.value === true && hooked.length === 1, `stop() resolved before the close it let this node claim had ended: ${state}`);
  } finally {
    clock.advance(60_000);
    await engine.stop();
  }
});

test('stop() from the hook of a close the repair runs returns, while a closeSession answered \'closing\' (this node\'s claim, reply lost) waits for it', { timeout: 30_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  let stopFromHook: ReturnType<typeof track<void>> | undefined;
  const { engine, client } = await engineOnRedis(r, clock, async () => { const stopping = engine.stop(); stopFromHook = track(stopping); await stopping; });
  try {
    const a = await engine.acquire({ sessionId: undefined, ip: IP });
    const id = a.sessionId;
    a.release();
    assert.ok(await idleInRedis(r, id), 'its release landed');
    // The first claim lands in Redis, its reply is lost: this node holds the claim, runs no close yet.
    let lose = true;
    wrapScript(client, 'lwsClaim', (claim) => async (...args) => { const answer = await claim(...args); if (lose) { lose = false; throw new Error('connection lost'); } return answer; });
    const first = track(engine.closeSession(id));
    assert.ok(await eventually(() => first.settled, 2_000) && first.error !== undefined, 'the first closeSession failed (reply lost)');
    // Answered 'closing' (this node's own claim), no pipeline here: a join of "another node's" close.
    const second = track(engine.closeSession(id));
    await new Promise((resolve) => setTimeout(resolve, 50));
    clock.advance(1_000); // the sweep repairs: runs the close this node claimed
    assert.ok(await eventually(() => stopFromHook !== undefined, 5_000), 'the hook ran and called stop()');
    const stopped = await eventually(() => stopFromHook!.settled, 2_000);
    assert.ok(stopped, `stop() from the hook still waiting (second settled ${second.settled}; key left: ${await r.redis.exists(`${r.prefix}s:${id}`)})`);
  } finally {
    clock.advance(60_000);
    await engine.stop();
  }
});
