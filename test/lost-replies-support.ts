// Lost replies, as the Redis lost-reply tests make them: a script runs in Redis, then its call fails as
// a cut connection makes it fail. Shared by test/redis-lost-replies*.test.ts.
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type RequestLease } from '../src/index.js';
import { eventually } from './helpers.js';
import { idleInRedis, IP, node, stopAll, wrapScript, type Node, type Script, type Vars } from './redis-crossing.js';
import { redisForTest, type RedisForTest } from './redis-support.js';

/** The next call of `name` runs in Redis, then fails as if the connection had been cut before its reply. */
export function loseNextReply(client: Parameters<typeof wrapScript>[0], name: string): void {
  let lost = false;
  wrapScript(client, name, (original: Script) => async (...args) => {
    const reply = await original(...args);
    if (lost) return reply;
    lost = true;
    throw new Error('Connection is closed.');
  });
}

/**
 * Every rename from `x` runs in Redis, then loses its reply, and Redis stays silent for the read that
 * follows (the node cannot learn whether it ran); call the function returned once Redis answers again.
 */
export function loseRenameRepliesWithRedisSilent(x: Node): () => void {
  const client = x.client as unknown as { hget: (...args: unknown[]) => Promise<unknown> };
  const hget = client.hget;
  wrapScript(x.client, 'lwsRename', (rename: Script) => async (...args) => {
    await rename(...args);
    client.hget = async () => { throw new Error('Connection is closed.'); };
    throw new Error('Connection is closed.');
  });
  return () => { client.hget = hget; };
}

/** Runs `body` with one node on the test's prefix, its time on a ManualClock; stops it after. */
export async function withNode(t: TestContext, body: (r: RedisForTest, x: Node, clock: ManualClock) => Promise<void>): Promise<void> {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const x = await node(r, clock);
  try {
    await body(r, x, clock);
  } finally {
    await stopAll(clock, [], undefined, x);
  }
}

/** A request of a new session on `x` whose spawn's reply is lost (the task never runs); its request then ends. */
export async function lostSpawn(x: Node): Promise<RequestLease<Vars>> {
  const lease = await x.engine.acquire({ sessionId: undefined, ip: IP });
  loseNextReply(x.client, 'lwsSpawn');
  lease.proc.spawn('export', async () => {});
  assert.ok(await eventually(() => x.errors.some((e) => e.code === 'ERR_SESSION_TASK_FAILED'), 5_000));
  lease.release();
  return lease;
}

/** A session made on node `x`, its request over and its process free in Redis (with `vars` saved). */
export async function idleSession(r: RedisForTest, x: Node, vars: Vars = {}): Promise<RequestLease<Vars>> {
  const lease = await x.engine.acquire({ sessionId: undefined, ip: IP });
  Object.assign(lease.proc.vars, vars);
  lease.release();
  assert.ok(await idleInRedis(r, lease.sessionId));
  return lease;
}

/** Moves session time past the repair's grace (nodeLeaseMs, 10 s by default), a second at a time (each second a sweep). */
export async function pastTheGrace(clock: ManualClock): Promise<void> {
  for (let i = 0; i < 12; i++) {
    clock.advance(1_000);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
