// regenerate while requests wait for the session: they were bound to it before the id changed, so they
// go on in it under its new id (with its context), on every store and every node; a request that
// arrives with the old id after the change gets a brand-new session (the old id is dead).

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { ManualClock, SessionEngine, type SessionEngineOptions } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { deferred, eventually } from './helpers.js';
import type { Vars } from './model.js';
import { redisForTest, type RedisForTest } from './redis-support.js';

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


/**
 * A client for another node whose subscriber holds the channel's messages back between `hold()` and
 * `letGo()` (then delivers them in order): that node hears of what the others announce late.
 */
function holdingClient(url: string): { client: Redis; hold: () => void; letGo: () => void } {
  const client = new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 1 });
  client.on('error', () => {});
  let holding = false;
  const held: unknown[][] = [];
  let deliver: ((...args: unknown[]) => boolean) | undefined;
  const duplicate = client.duplicate.bind(client);
  client.duplicate = (...args: Parameters<Redis['duplicate']>) => {
    const subscriber = duplicate(...args);
    const emit = subscriber.emit.bind(subscriber);
    deliver = (...message: unknown[]) => emit('message', ...message);
    subscriber.emit = (event: string | symbol, ...rest: unknown[]) => {
      if (event === 'message' && holding) return held.push(rest) > 0;
      return emit(event, ...rest);
    };
    return subscriber;
  };
  return {
    client,
    hold: () => { holding = true; },
    letGo: () => {
      holding = false;
      for (const message of held.splice(0)) deliver?.(...message);
    },
  };
}


/** Two nodes with two processes per session; `elsewhere` hears the channel late (holdingClient). */
function nodesOneHearingLate(r: RedisForTest, onClose?: SessionEngineOptions<Vars>['onClose']): ReturnType<typeof holdingClient> & { here: SessionEngine<Vars>; elsewhere: SessionEngine<Vars> } {
  const late = holdingClient(r.url);
  const options = (store: SessionEngineOptions<Vars>['store']): SessionEngineOptions<Vars> => ({ clock: new ManualClock(), processesPerSession: 2, store, ...(onClose === undefined ? {} : { onClose }) });
  return {
    ...late,
    here: new SessionEngine<Vars>(options(createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: 20 }))),
    elsewhere: new SessionEngine<Vars>(options(createRedisStore({ redis: late.client, prefix: r.prefix, pollIntervalMs: 20 }))),
  };
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

test('Redis store: a request of the session running on another node when it is regenerated ends in it: its state is saved under the new id, its process freed, its cookie the new one', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const options = (): SessionEngineOptions<Vars> => ({ clock: new ManualClock(), processesPerSession: 2, store: createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: 20 }) });
  const here = new SessionEngine<Vars>(options());
  const elsewhere = new SessionEngine<Vars>(options());
  try {
    const login = await here.acquire({ sessionId: undefined, ip: IP });
    const oldId = login.sessionId;
    const running = await elsewhere.acquire({ sessionId: oldId, ip: IP });
    assert.notEqual(running.proc.processId, login.proc.processId, 'a second process of the session, on the other node');
    const newId = await login.run(() => here.regenerate(oldId));
    assert.ok(newId !== null);
    // Released at once, before the other node may have heard of the rename: the release names the old id.
    running.proc.vars.w = 7;
    running.release();
    login.release();
    assert.ok(await eventually(async () => (await r.redis.zscore(`${r.prefix}idle`, newId)) !== null), 'the session goes idle: both its processes are free');
    const fields = await r.redis.hgetall(`${r.prefix}s:${newId}`);
    assert.deepEqual(Object.entries(fields).filter(([name]) => name.startsWith('b:')).map(([, token]) => token), ['0', '0']);
    assert.ok(await eventually(() => running.sessionId === newId), 'the other node learns the new id (its response sends the new cookie)');
    // Both processes free: two requests at once get both, one of them with the state the request left.
    const [a, b] = await Promise.all([elsewhere.acquire({ sessionId: newId, ip: IP }), elsewhere.acquire({ sessionId: newId, ip: IP })]);
    assert.deepEqual([a.proc.vars.w, b.proc.vars.w].sort(), [7, undefined].sort(), 'the write of the request that ran across the rename is kept');
    a.release();
    b.release();
  } finally {
    await Promise.all([here.stop(), elsewhere.stop()]);
  }
});

test('Redis store: an enter that ran just before the rename, its reply read after this node heard of it, runs in the session under the new id (cookie and all)', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  // The other node's client is ours, so its enter's reply can be held back until the rename is announced.
  const client = new Redis(r.url, { enableOfflineQueue: false, maxRetriesPerRequest: 1 }) as Redis & { lwsEnterManyBuffer: (...args: unknown[]) => Promise<unknown> };
  client.on('error', () => {});
  // The messages the other node's subscriber has handed to the store (the store subscribes on a duplicate).
  const heard: string[] = [];
  const duplicate = client.duplicate.bind(client);
  client.duplicate = (...args: Parameters<Redis['duplicate']>) => {
    const subscriber = duplicate(...args);
    const emit = subscriber.emit.bind(subscriber);
    subscriber.emit = (event: string | symbol, ...rest: unknown[]) => {
      const handled = emit(event, ...rest);
      if (event === 'message') heard.push(String(rest[1]));
      return handled;
    };
    return subscriber;
  };
  const options = (store: SessionEngineOptions<Vars>['store']): SessionEngineOptions<Vars> => ({ clock: new ManualClock(), processesPerSession: 2, store });
  const here = new SessionEngine<Vars>(options(createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: 20 })));
  const elsewhere = new SessionEngine<Vars>(options(createRedisStore({ redis: client, prefix: r.prefix, pollIntervalMs: 20 })));
  try {
    const login = await here.acquire({ sessionId: undefined, ip: IP });
    const oldId = login.sessionId;
    await elsewhere.acquire({ sessionId: undefined, ip: IP }).then((lease) => lease.release()); // connected, scripts defined
    const replyRead = deferred();
    let entered = false;
    const enter = client.lwsEnterManyBuffer.bind(client);
    client.lwsEnterManyBuffer = (...args: unknown[]) => enter(...args).then(async (reply) => { entered = true; await replyRead.promise; return reply; });
    const pending = elsewhere.acquire({ sessionId: oldId, ip: IP });
    assert.ok(await eventually(() => entered), 'the enter ran (a second process of the session)');
    const newId = await login.run(() => here.regenerate(oldId));
    assert.ok(newId !== null);
    login.release();
    // The other node hears of the rename (it wakes its waiters, re-keys its sessions) before the reply.
    assert.ok(await eventually(() => heard.includes(`N ${oldId} ${newId}`), 5_000), 'the other node heard of the rename');
    replyRead.resolve();
    const running = await pending;
    const cookie = running.cookie();
    running.release();
    assert.equal(running.sessionId, newId, 'the request runs in the session under its new id');
    assert.ok(cookie.action === 'set' && cookie.sessionId === newId, 'its response sends the new cookie, not the dead one');
    assert.ok(await eventually(async () => (await r.redis.zscore(`${r.prefix}idle`, newId)) !== null), 'and its release frees its process');
    assert.ok(!elsewhere.sessions().some((info) => info.id === oldId), 'the other node lists no session under the dead id');
  } finally {
    await Promise.all([here.stop(), elsewhere.stop()]);
    client.disconnect();
  }
});

test('Redis store: a logout on another node, in the moment before that node hears of the rename, closes the renamed session', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const closes: string[] = [];
  const { client, hold, letGo, here, elsewhere } = nodesOneHearingLate(r, (proc) => { closes.push(proc.sessionId); });
  try {
    const login = await here.acquire({ sessionId: undefined, ip: IP });
    const oldId = login.sessionId;
    const running = await elsewhere.acquire({ sessionId: oldId, ip: IP });
    hold();
    const newId = await login.run(() => here.regenerate(oldId));
    assert.ok(newId !== null);
    login.release();
    // Nothing of the channel reaches that node until the logout has returned.
    const closed = await running.run(() => elsewhere.closeSession(elsewhere.currentSessionId()));
    letGo();
    assert.equal(closed, true, 'the logout closed the session');
    assert.equal(running.sessionId, newId);
    running.release();
    assert.ok(await eventually(async () => (await r.redis.exists(`${r.prefix}s:${newId}`)) === 0), 'the renamed session is gone');
    assert.deepEqual(closes.sort(), [newId, newId], 'each of its two processes hooked once, under the new id');
  } finally {
    await Promise.all([here.stop(), elsewhere.stop()]);
    client.disconnect();
  }
});

test('Redis store: a request with the new id that reaches a node before it hears of the rename, while a request under the old id runs there: a close reaches both (abort, cookie)', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const { client, hold, letGo, here, elsewhere } = nodesOneHearingLate(r);
  try {
    const login = await here.acquire({ sessionId: undefined, ip: IP });
    const oldId = login.sessionId;
    const running = await elsewhere.acquire({ sessionId: oldId, ip: IP });
    hold();
    const newId = await login.run(() => here.regenerate(oldId));
    assert.ok(newId !== null);
    login.release();
    assert.ok(await eventually(async () => (await r.redis.zscore(`${r.prefix}idle`, newId)) === null && (await r.redis.hget(`${r.prefix}s:${newId}`, `b:${login.proc.processId}`)) === '0'), 'the login\'s process is free');
    // The browser's next request, with the new cookie, reaches the other node before the rename does.
    const next = await elsewhere.acquire({ sessionId: newId, ip: IP });
    letGo();
    assert.ok(await eventually(() => running.sessionId === newId), 'the running request moved to the new id');

    const closing = here.closeSession(newId);
    const aborted = await eventually(() => running.proc.signal.aborted && next.proc.signal.aborted);
    const cookies = [running.cookie(), next.cookie()].map((c) => c.action);
    // Released before asserting, so a failure cannot leave the close or a stop waiting.
    running.release();
    next.release();
    assert.equal(await closing, true);
    assert.ok(aborted, 'both requests running there are asked to stop');
    assert.deepEqual(cookies, ['clear', 'clear'], 'and both responses clear the cookie');
  } finally {
    await Promise.all([here.stop(), elsewhere.stop()]);
    client.disconnect();
  }
});

test('Redis store: a release that comes late, after its session was renamed twice and then closed, leaves nothing behind in its node\'s list of running work', { timeout: 20_000 }, async (t: TestContext) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const late = holdingClient(r.url);
  const hereClock = new ManualClock();
  const options = (clock: ManualClock, store: SessionEngineOptions<Vars>['store']): SessionEngineOptions<Vars> => ({ clock, processesPerSession: 2, store });
  const here = new SessionEngine<Vars>(options(hereClock, createRedisStore({ url: r.url, prefix: r.prefix, pollIntervalMs: 20 })));
  const elsewhere = new SessionEngine<Vars>(options(new ManualClock(), createRedisStore({ redis: late.client, prefix: r.prefix, pollIntervalMs: 20 })));
  /** Every "<id> <pid>" some node's list of running work holds for the process. */
  const listed = async (pid: string): Promise<string[]> => {
    const lists = await r.redis.keys(`${r.prefix}nb:*`);
    const members = (await Promise.all(lists.map((key) => r.redis.smembers(key)))).flat();
    return members.filter((member) => member.endsWith(` ${pid}`));
  };
  try {
    const login = await here.acquire({ sessionId: undefined, ip: IP });
    const oldId = login.sessionId;
    const running = await elsewhere.acquire({ sessionId: oldId, ip: IP });
    const pid = running.proc.processId;
    assert.deepEqual(await listed(pid), [`${oldId} ${pid}`]);
    late.hold();
    const middleId = await login.run(() => here.regenerate(oldId));
    assert.ok(middleId !== null);
    const newId = await login.run(() => here.regenerate(middleId));
    assert.ok(newId !== null);
    login.release();
    assert.deepEqual(await listed(pid), [`${newId} ${pid}`], 'each rename moved the entry to the new id');
    // Closed from here while the request still runs elsewhere: the drain gives up after closeTimeoutMs.
    const closing = here.closeSession(newId);
    assert.ok(await eventually(async () => {
      hereClock.advance(here.getOption('closeTimeoutMs') as number);
      return (await r.redis.exists(`${r.prefix}s:${newId}`)) === 0;
    }), 'the close finished without the running request');
    assert.equal(await closing, true);
    // Its node never heard of the renames: the release names the first id, and every id is gone.
    running.release();
    assert.ok(await eventually(async () => (await listed(pid)).length === 0), 'no entry is left for the process');
    late.letGo();
  } finally {
    late.letGo();
    await Promise.all([here.stop(), elsewhere.stop()]);
    late.client.disconnect();
  }
});
