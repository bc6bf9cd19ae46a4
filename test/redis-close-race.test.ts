// A close and an enter that cross: Redis ran a request's enter just before a close's claim, and the
// node reads the enter's reply only after the close has started (its own claim answered, or another
// node's announcement heard). The request holds a process the close waits for, so it must be told to
// stop (signal aborted, cookie cleared) like the requests that were already running; else the close
// waits until that request ends on its own, and with a ManualClock it never does. The replies are held
// by wrapping the store's scripts on a client the test owns, so each order is made, not hoped for.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Redis } from 'ioredis';
import { ManualClock, SessionEngine, type RequestLease, type SessionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { track } from './engine-harness.js';
import { eventually } from './helpers.js';
import { redisForTest, type RedisForTest } from './redis-support.js';

type Vars = Record<string, unknown>;
type Script = (...args: unknown[]) => Promise<unknown>;
const IP = '127.0.0.1';

interface Node {
  readonly engine: SessionEngine<Vars>;
  readonly client: Redis;
  readonly errors: SessionError[];
  readonly hooked: string[];
}

async function node(r: RedisForTest, clock: ManualClock, processesPerSession = 1): Promise<Node> {
  const client = await r.client();
  const hooked: string[] = [];
  const engine = new SessionEngine<Vars>({
    clock, closeTimeoutMs: 10_000, processesPerSession, onClose: (proc) => { hooked.push(proc.processId); },
    store: createRedisStore({ redis: client, prefix: r.prefix, pollIntervalMs: 5, sweepIntervalMs: 1_000 }),
  });
  const errors: SessionError[] = [];
  engine.on('error', (error) => errors.push(error));
  return { engine, client, errors, hooked };
}

/** Replaces one of the store's scripts on `client` (defined by createRedisStore) by `wrap(original)`. */
function wrapScript(client: Redis, name: string, wrap: (original: Script) => Script): void {
  const scripts = client as unknown as Record<string, Script>;
  const original = scripts[name]!.bind(client);
  scripts[name] = wrap(original);
}

/** The next enters run in Redis at once; their replies reach the store only once `deliver()` is called. */
function holdEnterReplies(client: Redis): { sent: Promise<void>; deliver(): void } {
  let sent!: () => void;
  let deliver!: () => void;
  const sentPromise = new Promise<void>((resolve) => { sent = resolve; });
  const delivered = new Promise<void>((resolve) => { deliver = resolve; });
  wrapScript(client, 'lwsEnterManyBuffer', (enterMany) => async (...args) => {
    const reply = enterMany(...args);
    sent();
    await delivered;
    return reply;
  });
  return { sent: sentPromise, deliver };
}

/** Resolves once a claim has been answered and its continuation (the close pipeline's start) has run. */
function claimAnswered(client: Redis): Promise<void> {
  return new Promise<void>((resolve) => {
    wrapScript(client, 'lwsClaim', (claim) => async (...args) => {
      const reply = await claim(...args);
      setImmediate(resolve);
      return reply;
    });
  });
}

/** The session's processes are all free in Redis (a release is written after the response, asynchronously). */
function idleInRedis(r: RedisForTest, id: string): Promise<boolean> {
  return eventually(async () => {
    const fields = await r.redis.hgetall(`${r.prefix}s:${id}`);
    const busy = Object.entries(fields).filter(([name]) => name.startsWith('b:'));
    return busy.length > 0 && busy.every(([, value]) => value === '0');
  }, 5_000);
}

/** Ends whatever a failed assertion left running, so the engines stop (the ManualClock never moves on its own). */
async function stopAll(clock: ManualClock, leases: (RequestLease<Vars> | undefined)[], closing: { settled: boolean } | undefined, ...nodes: Node[]): Promise<void> {
  for (const lease of leases) lease?.release();
  if (closing?.settled !== true) clock.advance(60_000);
  await Promise.all(nodes.map((n) => n.engine.stop()));
}

test('from inside: a logout claims the close while another request of the session has entered (processesPerSession 2): that request is told to stop, the logout ends, both processes are hooked', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const x = await node(r, clock, 2);
  let a: RequestLease<Vars> | undefined;
  let b: RequestLease<Vars> | undefined;
  let logout: ReturnType<typeof track<boolean>> | undefined;
  try {
    const first = await x.engine.acquire({ sessionId: undefined, ip: IP });
    first.release();
    a = await x.engine.acquire({ sessionId: first.sessionId, ip: IP });
    const hold = holdEnterReplies(x.client);
    const claimed = claimAnswered(x.client);
    const entering = x.engine.acquire({ sessionId: first.sessionId, ip: IP });
    await hold.sent;
    logout = track(a.run(() => x.engine.closeSession(x.engine.currentSessionId())));
    await claimed;
    hold.deliver();
    b = await entering; // Redis ran its enter first: it has the session's second process
    assert.equal(b.sessionId, first.sessionId);
    assert.equal(b.proc.signal.aborted, true, 'work that starts in a session whose close has started is told to stop');
    assert.equal(b.cookie().action, 'clear');
    b.release();
    assert.ok(await eventually(() => logout!.settled, 5_000), 'the close does not wait forever for a request nobody told');
    assert.equal(logout.value, true);
    assert.deepEqual([...x.hooked].sort(), [a.proc.processId, b.proc.processId].sort());
  } finally {
    await stopAll(clock, [a, b], logout, x);
  }
  assert.deepEqual(x.errors.map((e) => e.message), []);
});

test('from outside, on the node where the request enters and nothing else of the session runs: the request is told to stop at once and its cookie is cleared; the close ends once it does', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const x = await node(r, clock);
  let b: RequestLease<Vars> | undefined;
  let closing: ReturnType<typeof track<boolean>> | undefined;
  try {
    const first = await x.engine.acquire({ sessionId: undefined, ip: IP });
    first.release();
    assert.ok(await idleInRedis(r, first.sessionId));
    const hold = holdEnterReplies(x.client);
    const claimed = claimAnswered(x.client);
    const entering = x.engine.acquire({ sessionId: first.sessionId, ip: IP });
    await hold.sent;
    closing = track(x.engine.closeSession(first.sessionId));
    await claimed;
    hold.deliver();
    b = await entering;
    assert.equal(b.sessionId, first.sessionId);
    assert.equal(b.proc.signal.aborted, true, 'the request hears of the close this node runs');
    assert.equal(b.cookie().action, 'clear');
    assert.equal(closing.settled, false, 'the close waits for the request');
    b.release();
    assert.ok(await eventually(() => closing!.settled, 5_000));
    assert.equal(closing.value, true);
    assert.deepEqual(x.hooked, [b.proc.processId]);
  } finally {
    await stopAll(clock, [b], closing, x);
  }
  assert.deepEqual(x.errors.map((e) => e.message), []);
});

test('from another node, its announcement heard before the enter\'s reply is read: the close is announced again while it waits, so the request is told to stop', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const x = await node(r, clock);
  const y = await node(r, clock);
  let b: RequestLease<Vars> | undefined;
  let closing: ReturnType<typeof track<boolean>> | undefined;
  try {
    const first = await x.engine.acquire({ sessionId: undefined, ip: IP });
    first.release();
    assert.ok(await idleInRedis(r, first.sessionId));
    assert.notEqual(x.engine.sessionExpiration(first.sessionId), null);
    const hold = holdEnterReplies(x.client);
    const entering = x.engine.acquire({ sessionId: first.sessionId, ip: IP });
    await hold.sent;
    closing = track(y.engine.closeSession(first.sessionId));
    // x has heard the close (its view of the session is gone) before it reads the enter's reply.
    assert.ok(await eventually(() => x.engine.sessionExpiration(first.sessionId) === null, 5_000), 'x hears the close');
    hold.deliver();
    b = await entering;
    const entered = b;
    assert.equal(entered.sessionId, first.sessionId);
    assert.ok(await eventually(() => entered.proc.signal.aborted, 5_000), 'the request hears of the close another node runs');
    assert.equal(entered.cookie().action, 'clear');
    assert.equal(closing.settled, false, 'the close waits for the request');
    entered.release();
    assert.ok(await eventually(() => closing!.settled, 5_000));
    assert.equal(closing.value, true);
    assert.deepEqual([...x.hooked, ...y.hooked], [entered.proc.processId]);
  } finally {
    await stopAll(clock, [b], closing, x, y);
  }
  assert.deepEqual([...x.errors, ...y.errors].map((e) => e.message), []);
});
