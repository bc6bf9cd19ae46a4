// Replies and announcements that cross: Redis ran one node's script just before another decision (a
// close's claim, a rename, a stop), and the node reads the reply only after it has acted on that
// decision, or the other way round. Each order is made, not hoped for: the store's scripts are wrapped on
// a client the test owns, so a reply is held until the test lets it go, and pub/sub messages can be held
// on the subscriber the store duplicates from that client.
//
// Closes: a request whose enter Redis ran just before a close's claim holds a process the close waits
// for, so it must be told to stop (signal aborted, cookie cleared) like the requests already running;
// else the close waits until that request ends on its own, and with a ManualClock it never does.
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

interface NodeSettings {
  readonly processesPerSession?: number;
  readonly onStop?: 'auto' | 'close' | 'keep';
  /** How often waits look again without a message. @default 5 */
  readonly pollIntervalMs?: number;
  /** Holds pub/sub messages that start with one of these (e.g. 'N ') while `held.on` is true. */
  readonly held?: HeldMessages;
}

async function node(r: RedisForTest, clock: ManualClock, settings: NodeSettings = {}): Promise<Node> {
  const client = await r.client();
  if (settings.held !== undefined) holdMessagesOf(client, settings.held);
  const hooked: string[] = [];
  const engine = new SessionEngine<Vars>({
    clock, closeTimeoutMs: 10_000, processesPerSession: settings.processesPerSession ?? 1, onClose: (proc) => { hooked.push(proc.processId); },
    store: createRedisStore({ redis: client, prefix: r.prefix, pollIntervalMs: settings.pollIntervalMs ?? 5, sweepIntervalMs: 1_000, onStop: settings.onStop ?? 'auto' }),
  });
  const errors: SessionError[] = [];
  engine.on('error', (error) => errors.push(error));
  return { engine, client, errors, hooked };
}

/** Pub/sub messages of a node held back while `on`; `deliver()` hands them to the store in order. */
class HeldMessages {
  on = false;
  /** Every message the node's subscriber got, held or not, in order. */
  readonly seen: string[] = [];
  readonly #starts: string[];
  readonly #queue: (() => void)[] = [];

  constructor(...starts: string[]) {
    this.#starts = starts;
  }

  get count(): number {
    return this.#queue.length;
  }

  holds(message: string): boolean {
    return this.on && this.#starts.some((start) => message.startsWith(start));
  }

  hold(deliver: () => void): void {
    this.#queue.push(deliver);
  }

  deliver(): void {
    this.on = false;
    for (const deliver of this.#queue.splice(0)) deliver();
  }
}

/** The store subscribes on a duplicate of the client it is given: the duplicate's 'message' events pass through `held`. */
function holdMessagesOf(client: Redis, held: HeldMessages): void {
  const duplicate = client.duplicate.bind(client);
  client.duplicate = (...args: Parameters<Redis['duplicate']>) => {
    const subscriber = duplicate(...args);
    const emit = subscriber.emit.bind(subscriber);
    subscriber.emit = (event: string | symbol, ...rest: unknown[]): boolean => {
      if (event === 'message') held.seen.push(String(rest[1]));
      if (event === 'message' && held.holds(String(rest[1]))) {
        held.hold(() => emit(event, ...rest));
        return true;
      }
      return emit(event, ...rest);
    };
    return subscriber;
  };
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
  const x = await node(r, clock, { processesPerSession: 2 });
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

// From outside, with nothing else of the session running on the node where the request enters: the
// close runs on that node (its claim answered first) or on another (its announcement heard first).
for (const closer of ['this node', 'another node'] as const) {
  test(`from outside, closed by ${closer}, the enter's reply read after the close started there: the request is told to stop at once and its cookie is cleared; the close ends once it does`, { timeout: 20_000 }, async (t) => {
    const r = await redisForTest(t);
    if (r === undefined) return;
    const clock = new ManualClock();
    const x = await node(r, clock);
    const y = closer === 'this node' ? x : await node(r, clock);
    let b: RequestLease<Vars> | undefined;
    let closing: ReturnType<typeof track<boolean>> | undefined;
    try {
      const first = await x.engine.acquire({ sessionId: undefined, ip: IP });
      first.release();
      assert.ok(await idleInRedis(r, first.sessionId));
      assert.notEqual(x.engine.sessionExpiration(first.sessionId), null);
      const hold = holdEnterReplies(x.client);
      const claimed = claimAnswered(y.client);
      const entering = x.engine.acquire({ sessionId: first.sessionId, ip: IP });
      await hold.sent;
      closing = track(y.engine.closeSession(first.sessionId));
      await claimed;
      // x has claimed the close, or heard of it (its view of the session is gone), before it reads the reply.
      assert.ok(await eventually(() => x.engine.sessionExpiration(first.sessionId) === null, 5_000), 'x knows of the close');
      hold.deliver();
      b = await entering;
      assert.equal(b.sessionId, first.sessionId);
      assert.equal(b.proc.signal.aborted, true, `the request hears of the close ${closer} runs`);
      assert.equal(b.cookie().action, 'clear');
      assert.equal(closing.settled, false, 'the close waits for the request');
      b.release();
      assert.ok(await eventually(() => closing!.settled, 5_000));
      assert.equal(closing.value, true);
      assert.deepEqual([...x.hooked, ...(y === x ? [] : y.hooked)], [b.proc.processId]);
    } finally {
      await stopAll(clock, [b], closing, ...(y === x ? [x] : [x, y]));
    }
    assert.deepEqual([...x.errors, ...(y === x ? [] : y.errors)].map((e) => e.message), []);
  });
}

/** Keys of the run's sessions in Redis (`P s:<id>`). */
async function sessionKeys(r: RedisForTest): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, found] = await r.redis.scan(cursor, 'MATCH', `${r.prefix}s:*`, 'COUNT', 1000);
    cursor = next;
    keys.push(...found);
  } while (cursor !== '0');
  return keys;
}

/** Counts the client's MULTI calls (a node leaving the cluster at the end of its stop makes one). */
function countMulti(client: Redis): { readonly calls: number } {
  const counter = { calls: 0 };
  const multi = client.multi.bind(client) as (...args: unknown[]) => ReturnType<Redis['multi']>;
  (client as unknown as { multi: (...args: unknown[]) => ReturnType<Redis['multi']> }).multi = (...args) => {
    counter.calls++;
    return multi(...args);
  };
  return counter;
}

const turnsOfTheLoop = async (count: number): Promise<void> => {
  for (let i = 0; i < count; i++) await new Promise<void>((resolve) => setImmediate(resolve));
};

test("closeSession on a node whose claim finds another node closing the session, that close's end ('x') read before the claim's reply: true at once, not at the next poll", { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const seen = new HeldMessages();
  // x polls a minute apart: a wait that missed the end it had already heard would last that long.
  const x = await node(r, clock, { held: seen, pollIntervalMs: 60_000 });
  const y = await node(r, clock);
  let a: RequestLease<Vars> | undefined;
  let closed: ReturnType<typeof track<boolean>> | undefined;
  try {
    a = await y.engine.acquire({ sessionId: undefined, ip: IP });
    const running = a;
    const id = a.sessionId;
    const closingOnY = y.engine.closeSession(id); // from outside: waits for the request
    assert.ok(await eventually(async () => (await r.redis.hget(`${r.prefix}s:${id}`, 'st')) === 'c', 5_000));
    // x's claim finds y's close under way; its reply is read only once x has heard that close end.
    wrapScript(x.client, 'lwsClaim', (claim) => async (...args) => {
      const reply = await claim(...args);
      running.release();
      await eventually(() => seen.seen.includes(`x ${id}`), 5_000);
      return reply;
    });
    closed = track(x.engine.closeSession(id));
    assert.ok(await eventually(() => closed!.settled, 5_000), 'the wait for the other node\'s close knows it has ended');
    assert.equal(closed.value, true);
    assert.equal(await closingOnY, true);
    assert.deepEqual(y.hooked, [running.proc.processId]);
    assert.deepEqual(x.hooked, []);
  } finally {
    a?.release();
    if (closed?.settled !== true) clock.advance(60_000);
    await Promise.all([x.engine.stop(), y.engine.stop()]);
  }
  assert.deepEqual([...x.errors, ...y.errors].map((e) => e.message), []);
});

test("a claim that fails on a Redis error while another node's close of the session is announced: the handle stays closing (the running request's cookie is cleared), the caller gets ERR_SESSION_STORE_UNAVAILABLE", { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const seen = new HeldMessages();
  const x = await node(r, clock, { held: seen });
  const y = await node(r, clock);
  let a: RequestLease<Vars> | undefined;
  try {
    a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    const id = a.sessionId;
    let closingOnY: Promise<boolean> | undefined;
    // x's claim never reaches Redis: y's close is claimed and heard by x meanwhile, then the call fails.
    wrapScript(x.client, 'lwsClaim', () => async () => {
      closingOnY = y.engine.closeSession(id);
      await eventually(() => seen.seen.includes(`c ${id}`), 5_000);
      throw new Error('connection lost');
    });
    await assert.rejects(x.engine.closeSession(id), { code: 'ERR_SESSION_STORE_UNAVAILABLE' });
    assert.equal(a.proc.signal.aborted, true, "y's close reached the running request");
    assert.equal(a.cookie().action, 'clear', 'the failed claim does not give the closing session back its cookie');
    a.release();
    assert.equal(await closingOnY, true);
    assert.deepEqual(y.hooked, [a.proc.processId]);
  } finally {
    a?.release();
    await Promise.all([x.engine.stop(), y.engine.stop()]);
  }
  assert.deepEqual(y.errors.map((e) => e.message), []);
  assert.deepEqual(x.errors.map((e) => e.message), [], 'the caller hears of the failure, not the error event');
});

// Stops: a request whose enter left before the stop began is the stop's to drain, not to leave behind.

test('stop() while an enter is on its way (onStop keep): the node does not leave before that request ends; the request runs, is saved and its process freed', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const x = await node(r, clock, { onStop: 'keep' });
  let b: RequestLease<Vars> | undefined;
  let stopping: ReturnType<typeof track<void>> | undefined;
  try {
    const first = await x.engine.acquire({ sessionId: undefined, ip: IP });
    first.proc.vars.n = 1;
    first.release();
    assert.ok(await idleInRedis(r, first.sessionId));
    const leaves = countMulti(x.client);
    const hold = holdEnterReplies(x.client);
    const entering = x.engine.acquire({ sessionId: first.sessionId, ip: IP });
    await hold.sent;
    stopping = track(x.engine.stop());
    await turnsOfTheLoop(5); // what the stop does without waiting is done by now
    assert.equal(leaves.calls, 0, 'the node has not left the cluster while a request it took is on its way in');
    hold.deliver();
    b = await entering;
    assert.equal(b.sessionId, first.sessionId);
    assert.equal(b.proc.signal.aborted, false, "onStop 'keep' closes nothing");
    assert.equal(b.proc.vars.n, 1);
    b.proc.vars.n = 2;
    assert.equal(stopping.settled, false, 'the stop drains the request');
    b.release();
    await x.engine.stop();
    assert.equal(leaves.calls, 1);
    assert.ok(await idleInRedis(r, first.sessionId), 'its process is free in Redis');
    // Another node finds the state the request left.
    const y = await node(r, new ManualClock(), { onStop: 'keep' });
    const c = await y.engine.acquire({ sessionId: first.sessionId, ip: IP });
    assert.equal(c.sessionId, first.sessionId);
    assert.equal(c.proc.vars.n, 2);
    c.release();
    await y.engine.stop();
    assert.deepEqual(y.errors.map((e) => e.message), []);
  } finally {
    await stopAll(clock, [b], stopping, x);
  }
  assert.deepEqual(x.errors.map((e) => e.message), []);
});

test('stop() while the enter of a closed session\'s cookie is on its way: its reply (no such session) comes after the stop began, so the request is refused (ERR_SESSION_STOPPED) and no session is made', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const x = await node(r, clock);
  try {
    const first = await x.engine.acquire({ sessionId: undefined, ip: IP });
    first.release();
    assert.equal(await x.engine.closeSession(first.sessionId), true);
    assert.deepEqual(await sessionKeys(r), []);
    const hold = holdEnterReplies(x.client);
    const entering = x.engine.acquire({ sessionId: first.sessionId, ip: IP });
    entering.catch(() => {});
    await hold.sent;
    const stopping = x.engine.stop();
    await turnsOfTheLoop(5);
    hold.deliver();
    await assert.rejects(entering, { code: 'ERR_SESSION_STOPPED' });
    await stopping;
    assert.deepEqual(await sessionKeys(r), [], 'no session was made after the stop began');
  } finally {
    await x.engine.stop();
  }
  assert.deepEqual(x.errors.map((e) => e.message), []);
});

// Waits.

test("an enter answered 'busy' after the process was released while it was on its way: the request tries again at once instead of waiting a poll for the wake it missed", { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  // Polls a minute apart: a request that missed its wake would wait that long.
  const x = await node(r, clock, { pollIntervalMs: 60_000 });
  let waiting: ReturnType<typeof track<RequestLease<Vars>>> | undefined;
  try {
    const first = await x.engine.acquire({ sessionId: undefined, ip: IP });
    first.release();
    assert.ok(await idleInRedis(r, first.sessionId));
    const a = await x.engine.acquire({ sessionId: first.sessionId, ip: IP });
    a.proc.vars.n = 1;
    const hold = holdEnterReplies(x.client);
    waiting = track(x.engine.acquire({ sessionId: first.sessionId, ip: IP }));
    await hold.sent; // Redis has found the process busy
    a.release();
    assert.ok(await idleInRedis(r, first.sessionId));
    await turnsOfTheLoop(5); // the release's reply has been read and its wake given (to nobody yet)
    hold.deliver();
    assert.ok(await eventually(() => waiting!.settled, 5_000), 'the request got the process well before the next poll');
    assert.equal(waiting.value?.sessionId, first.sessionId);
    assert.equal(waiting.value?.proc.vars.n, 1);
    waiting.value?.release();
  } finally {
    if (waiting?.settled !== true) clock.advance(60_000);
    await x.engine.stop();
  }
  assert.deepEqual(x.errors.map((e) => e.message), []);
});

// Renames.

test('regenerate not awaited by its request: the request\'s release waits for the rename\'s reply and lands under the new id (the process is freed, the next request enters at once)', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const x = await node(r, clock);
  let next: ReturnType<typeof track<RequestLease<Vars>>> | undefined;
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    a.proc.vars.n = 1;
    let renaming: Promise<string | null> | undefined;
    a.run(() => { renaming = x.engine.regenerate(x.engine.currentSessionId()); });
    a.release(); // the handler ended without waiting for the rename
    const newId = await renaming!;
    assert.equal(typeof newId, 'string');
    assert.ok(await idleInRedis(r, newId!), 'the process is free under the new id');
    next = track(x.engine.acquire({ sessionId: newId!, ip: IP }));
    assert.ok(await eventually(() => next!.settled, 5_000), 'the next request does not wait for a release that went to the old id');
    assert.equal(next.value?.sessionId, newId);
    assert.equal(next.value?.proc.vars.n, 1);
    next.value?.release();
  } finally {
    if (next?.settled !== true) clock.advance(60_000);
    await x.engine.stop();
  }
  assert.deepEqual(x.errors.map((e) => e.message), []);
});

// closeSession(old id) from outside, on a node that hears of another node's rename late: the claim
// answers 'unknown' (the old id names nothing), which must neither clear the live session's cookie (the
// announcement not heard yet) nor close the renamed session (heard while the claim was on its way).
for (const heard of ['after the claim is answered', "during the claim's round trip"] as const) {
  test(`closeSession(old id) from outside on a node that hears of another node's rename ${heard}: false, the renamed session lives on (its running request keeps its cookie, under the new id), nothing is closed`, { timeout: 20_000 }, async (t) => {
    const r = await redisForTest(t);
    if (r === undefined) return;
    const clock = new ManualClock();
    const held = new HeldMessages('N ', 'n ');
    // 'keep': the stops at the end close nothing, so any hook would be the close under test.
    const x = await node(r, clock, { held, onStop: 'keep' });
    const y = await node(r, clock, { onStop: 'keep' });
    let a: RequestLease<Vars> | undefined;
    try {
      a = await x.engine.acquire({ sessionId: undefined, ip: IP });
      const running = a;
      const oldId = a.sessionId;
      held.on = true;
      const newId = await y.engine.regenerate(oldId);
      assert.equal(typeof newId, 'string');
      assert.ok(await eventually(() => held.count > 0, 5_000));
      if (heard !== 'after the claim is answered') {
        // The claim's reply is read only once x has heard of the rename.
        wrapScript(x.client, 'lwsClaim', (claim) => async (...args) => {
          const reply = await claim(...args);
          held.deliver();
          await eventually(() => running.sessionId === newId, 5_000);
          return reply;
        });
      }
      assert.equal(await x.engine.closeSession(oldId), false, 'the old id names nothing from outside');
      assert.equal(running.proc.signal.aborted, false);
      assert.equal(running.cookie().action, 'set', "the live session's cookie is not cleared");
      held.deliver();
      assert.ok(await eventually(() => running.sessionId === newId, 5_000), 'x hears of the rename');
      const cookie = running.cookie();
      assert.equal(cookie.action === 'set' ? cookie.sessionId : cookie.action, newId);
      assert.notEqual(x.engine.sessionExpiration(newId!), null);
      assert.equal(await r.redis.hget(`${r.prefix}s:${newId}`, 'st'), 'o');
      running.release();
      assert.ok(await idleInRedis(r, newId!));
      const b = await x.engine.acquire({ sessionId: newId!, ip: IP });
      assert.equal(b.sessionId, newId);
      assert.equal(b.cookie().action, 'set');
      b.release();
    } finally {
      held.deliver();
      a?.release();
      await Promise.all([x.engine.stop(), y.engine.stop()]);
    }
    assert.deepEqual([...x.errors, ...y.errors].map((e) => e.message), []);
    assert.deepEqual([...x.hooked, ...y.hooked], [], 'nothing was closed');
  });
}
