// An enter whose reply Redis gave before a sweep took the node for dead, read in the same
// socket read as the reply to a beat sent after the node woke. The wire order is right (enter reply
// first), but the enter's continuation runs more microtask hops after ioredis resolves it (ScriptBatches:
// new Promise(resolve(thenable)), .then, await) than the heartbeat's (await directly): the beat's
// `answered()` (and its swept report) runs first, then the enter sees a lease not in doubt and starts
// a request on a process the sweep freed and another node now runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { eventually } from './helpers.js';
import { redisForTest, type RedisForTest } from './redis-support.js';
import { IP, lookDead, stopWithClocks, type Vars } from './redis-crossing.js';

const LEASE_MS = 200;
const SWEEP_MS = 1_000;
const realDelay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function makeNode(r: RedisForTest) {
  const client = await r.client();
  const clock = new ManualClock();
  const errors: Error[] = [];
  const engine = new SessionEngine<Vars>({
    clock, closeTimeoutMs: 5_000, processesPerSession: 1,
    store: createRedisStore({ redis: client, prefix: r.prefix, nodeLeaseMs: LEASE_MS, sweepIntervalMs: SWEEP_MS, pollIntervalMs: 5, onStop: 'keep' }),
  });
  engine.on('error', (e) => errors.push(e));
  const scripts = client as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  const beat = scripts.lwsHeartbeat!;
  let woken = (): void => {};
  return {
    client, clock, engine, errors,
    // Beats made while stalled reach Redis once woken; from then on, beats are ioredis's own calls again.
    stall: () => {
      const wakes = new Promise<void>((resolve) => { woken = resolve; });
      scripts.lwsHeartbeat = (...args) => wakes.then(() => beat.apply(client, args));
    },
    wake: () => { scripts.lwsHeartbeat = beat; woken(); },
  };
}

for (const sameRead of [false, true]) {
  test(`redis: a stale enter reply read ${sameRead ? 'in the same read as a post-wake beat reply' : 'alone'} grants no process`, { timeout: 20_000 }, async (t) => {
    const r = await redisForTest(t);
    if (r === undefined) return;
    const x = await makeNode(r);
    const y = await makeNode(r);
    try {
      const first = await x.engine.acquire({ sessionId: undefined, ip: IP });
      const id = first.sessionId;
      const pid = first.proc.processId;
      const xNode = (await r.redis.hget(`${r.prefix}s:${id}`, `o:${pid}`))!;
      first.release();
      await eventually(async () => (await r.redis.hget(`${r.prefix}s:${id}`, `b:${pid}`)) === '0', 5_000);
      (await y.engine.acquire({ sessionId: undefined, ip: IP })).release(); // y started

      // x stalls: its beats stop, and it reads nothing more; its enter runs in Redis, the reply waits.
      x.stall();
      x.client.stream.pause();
      const stale = x.engine.acquire({ sessionId: id, ip: IP });
      stale.catch(() => {});
      await eventually(async () => (await r.redis.hget(`${r.prefix}s:${id}`, `b:${pid}`)) !== '0', 5_000);

      // y's sweep takes x for dead and frees the process; y runs it.
      await lookDead(r, xNode, LEASE_MS);
      assert.ok(await eventually(async () => { y.clock.advance(SWEEP_MS); return (await r.redis.hget(`${r.prefix}s:${id}`, `b:${pid}`)) === '0'; }, 5_000), "y's sweep freed x's process");
      const onY = await y.engine.acquire({ sessionId: id, ip: IP });
      assert.equal(onY.proc.processId, pid, 'y runs the process x entered');

      await realDelay(LEASE_MS + 50);
      if (sameRead) {
        x.wake();
        await realDelay(LEASE_MS); // a beat (every third of a lease) went and its reply waits behind the enter's
      }
      x.client.stream.resume();
      if (!sameRead) {
        await realDelay(20); // the enter's reply is read (in doubt) before x's beats go again
        x.wake();
      }
      const outcome = await stale.then((lease) => { lease.release(); return `granted ${lease.proc.processId}`; }, (e: Error) => `refused: ${(e as { code?: string }).code}`);
      onY.release();
      assert.match(outcome, /^refused/, `x's stale enter must not run while y runs ${pid}`);
    } finally {
      x.wake();
      if (x.client.stream.isPaused()) x.client.stream.resume();
      await stopWithClocks([x, y]);
    }
  });
}

test('redis: a node taken for dead whose first beat after waking loses its reply still learns it (its running request is told)', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const x = await makeNode(r);
  const y = await makeNode(r);
  const scripts = x.client as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  try {
    const running = await x.engine.acquire({ sessionId: undefined, ip: IP });
    const { signal } = running.proc;
    const xNode = (await r.redis.hget(`${r.prefix}s:${running.sessionId}`, `o:${running.proc.processId}`))!;
    (await y.engine.acquire({ sessionId: undefined, ip: IP })).release();
    x.stall();
    await lookDead(r, xNode, LEASE_MS);
    assert.ok(await eventually(async () => { y.clock.advance(SWEEP_MS); return (await r.redis.hget(`${r.prefix}s:${running.sessionId}`, `b:${running.proc.processId}`)) === '0'; }, 5_000), "y's sweep freed x's process");
    // x wakes; its first beat runs in Redis but its reply is lost (the connection cut just then).
    x.wake();
    const beat = scripts.lwsHeartbeat!.bind(x.client);
    let lost = false;
    scripts.lwsHeartbeat = (...args) => {
      if (lost) return beat(...args);
      lost = true;
      return beat(...args).then(() => { throw new Error('Connection is closed.'); });
    };
    await realDelay(LEASE_MS * 2); // several beats answered since
    assert.equal(lost, true);
    const told = signal.aborted;
    running.release();
    assert.equal(told, true, 'the running request\'s signal aborted: x learnt it had been taken for dead');
  } finally {
    x.wake();
    await stopWithClocks([x, y]);
  }
});
