// Requests waiting for a busy session on the Redis store: each is counted among the session's waiters
// (the cluster-wide bound maxQueuedRequests) for as long as it waits, not only the first of its node.
// A count goes stale after 8 poll periods (at least 1 s) without a try, so this test waits past that.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type SessionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import type { Vars } from './model.js';
import { redisForTest } from './redis-support.js';

const IP = '127.0.0.1';
const POLL_INTERVAL_MS = 20;
/** Longer than a waiter stays counted without a try (max(1 s, 8 polls)). */
const PAST_STALE_MS = 1_500;

test('requests that start waiting together stay counted as waiters while they wait, so the queue bound holds cluster-wide', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const store = (): ReturnType<typeof createRedisStore> => createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: POLL_INTERVAL_MS });
  const here = new SessionEngine<Vars>({ clock: new ManualClock(), maxQueuedRequests: 3, store: store() });
  const elsewhere = new SessionEngine<Vars>({ clock: new ManualClock(), maxQueuedRequests: 3, store: store() });
  try {
    const holder = await here.acquire({ sessionId: undefined, ip: IP });
    const id = holder.sessionId;
    // Three at once: none sees another waiting on its node, each is told 'busy' by Redis.
    const waiting = [0, 1, 2].map(() => here.acquire({ sessionId: id, ip: IP }));
    await new Promise((resolve) => setTimeout(resolve, PAST_STALE_MS));
    assert.equal(await r.redis.zcard(`${r.prefix}wq:${id}`), 3, 'all three still counted');
    await assert.rejects(elsewhere.acquire({ sessionId: id, ip: IP }), (error: SessionError) => error.code === 'ERR_SESSION_QUEUE_FULL', 'a fourth, on another node, finds the queue full');
    holder.release();
    for (const pending of waiting) (await pending).release();
  } finally {
    await Promise.all([here.stop(), elsewhere.stop()]);
  }
});

test('nodes with different poll intervals: a node that polls often does not drop the waiters of one that polls seldom, so the queue bound holds', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  // Each waiter stays counted for its own node's window: 8 polls of 2 s here (16 s), at least 1 s there.
  const here = new SessionEngine<Vars>({ clock: new ManualClock(), maxQueuedRequests: 2, store: createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: 2_000 }) });
  const elsewhere = new SessionEngine<Vars>({ clock: new ManualClock(), maxQueuedRequests: 2, store: createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: POLL_INTERVAL_MS }) });
  try {
    const holder = await here.acquire({ sessionId: undefined, ip: IP });
    const id = holder.sessionId;
    const waiting = [0, 1].map(() => here.acquire({ sessionId: id, ip: IP }));
    // Past the other node's window, within this one's: the two waiters have not tried again yet.
    await new Promise((resolve) => setTimeout(resolve, PAST_STALE_MS));
    await assert.rejects(elsewhere.acquire({ sessionId: id, ip: IP }), (error: SessionError) => error.code === 'ERR_SESSION_QUEUE_FULL', 'a third, on the node that polls often, finds the queue full');
    assert.equal(await r.redis.zcard(`${r.prefix}wq:${id}`), 2, 'both waiters still counted');
    holder.release();
    for (const pending of waiting) (await pending).release();
  } finally {
    await Promise.all([here.stop(), elsewhere.stop()]);
  }
});

test('a waiter of a node of an earlier version (scored by its last try alone) still counts for the caller\'s window: the queue bound holds during a rolling upgrade', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const engine = new SessionEngine<Vars>({ clock: new ManualClock(), maxQueuedRequests: 1, store: createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: POLL_INTERVAL_MS }) });
  try {
    const holder = await engine.acquire({ sessionId: undefined, ip: IP });
    const id = holder.sessionId;
    // What a node of the earlier version writes when its request starts waiting: the Redis time of its try.
    const [seconds, micros] = await r.redis.time();
    await r.redis.zadd(`${r.prefix}wq:${id}`, Number(seconds) * 1000 + Math.floor(Number(micros) / 1000), 'earlier-node:1');
    await assert.rejects(engine.acquire({ sessionId: id, ip: IP }), (error: SessionError) => error.code === 'ERR_SESSION_QUEUE_FULL', 'the earlier node\'s waiter fills the queue');
    holder.release();
  } finally {
    await engine.stop();
  }
});
