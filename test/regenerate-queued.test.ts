// regenerate while requests wait for the session: they were bound to it before the id changed, so they
// go on in it under its new id (with its context), on every store and every node; a request that
// arrives with the old id after the change gets a brand-new session (the old id is dead).

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type SessionEngineOptions } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { eventually } from './helpers.js';
import type { Vars } from './model.js';
import { redisForTest } from './redis-support.js';

const IP = '127.0.0.1';

interface Engines {
  readonly here: SessionEngine<Vars>;
  readonly elsewhere: SessionEngine<Vars>;
  /** How many requests the store counts as waiting for the session. */
  waiters(sessionId: string): Promise<number>;
}

async function scenario(engines: Engines): Promise<void> {
  const { here, elsewhere, waiters } = engines;
  const login = await here.acquire({ sessionId: undefined, ip: IP });
  const oldId = login.sessionId;
  login.proc.vars.w = 1;
  // Two wait on the login's node (one behind the other), one on another node.
  const queued = [here, here, elsewhere].map((engine) => engine.acquire({ sessionId: oldId, ip: IP }));
  assert.ok(await eventually(async () => (await waiters(oldId)) === 3), 'all three wait before the id changes');
  const newId = await login.run(() => here.regenerate(oldId));
  assert.ok(newId !== null && newId !== oldId);
  login.proc.vars.w = 2;
  login.release();

  // One process: they take it one after the other, in whichever order the store gives it. Each is
  // released before anything is asserted, so a failure cannot leave the others waiting.
  const seen: { sessionId: string; w: number | undefined; cookie: string }[] = [];
  let lastWritten = 2;
  const waiting = new Map(queued.map((pending, i) => [i, pending.then((lease) => ({ i, lease }))]));
  while (waiting.size > 0) {
    const { i, lease } = await Promise.race(waiting.values());
    waiting.delete(i);
    const cookie = lease.cookie();
    seen.push({ sessionId: lease.sessionId, w: lease.proc.vars.w, cookie: cookie.action === 'set' ? cookie.sessionId : 'cleared' });
    lease.proc.vars.w = ++lastWritten;
    lease.release();
  }
  assert.deepEqual(seen, [2, 3, 4].map((w) => ({ sessionId: newId, w, cookie: newId })),
    'each request that waited goes on in the session under its new id, with the context the one before it left, and sends the new cookie');

  const late = await here.acquire({ sessionId: oldId, ip: IP });
  late.release();
  assert.notEqual(late.sessionId, oldId);
  assert.notEqual(late.sessionId, newId, 'the old id, arriving after the change, gets a brand-new session');
}

test('memory store: requests queued behind a login that regenerates go on in the renamed session', async () => {
  const engine = new SessionEngine<Vars>({ clock: new ManualClock() });
  try {
    const waiters = async (id: string): Promise<number> => engine.sessions().find((s) => s.id === id)?.queuedRequests ?? 0;
    await scenario({ here: engine, elsewhere: engine, waiters });
  } finally {
    await engine.stop();
  }
});

test('Redis store: requests queued on this node and on another behind a login that regenerates go on in the renamed session', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const options = (): SessionEngineOptions<Vars> => ({ clock: new ManualClock(), store: createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: 20 }) });
  const here = new SessionEngine<Vars>(options());
  const elsewhere = new SessionEngine<Vars>(options());
  try {
    await scenario({ here, elsewhere, waiters: (id) => r.redis.zcard(`${r.prefix}wq:${id}`) });
  } finally {
    await Promise.all([here.stop(), elsewhere.stop()]);
  }
});
