// What the crossed-replies suites share (test/redis-crossed-*.test.ts): Redis ran one node's script
// just before another decision (a close's claim, a rename, a stop), and the node reads the reply only
// after it has acted on that decision, or the other way round. Each order is made, not hoped for: the
// store's scripts are wrapped on a client the test owns, so a reply is held until the test lets it go,
// and pub/sub messages can be held (or watched) on the subscriber the store duplicates from that client.
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import type { Redis, RedisOptions } from 'ioredis';
import { ManualClock, SessionEngine, type RequestLease, type SessionEngineOptions, type SessionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { eventually } from './helpers.js';
import { redisForTest, type RedisForTest } from './redis-support.js';

export type Vars = Record<string, unknown>;
export type Script = (...args: unknown[]) => Promise<unknown>;
export const IP = '127.0.0.1';

export interface Node {
  readonly engine: SessionEngine<Vars>;
  readonly client: Redis;
  readonly errors: SessionError[];
  readonly hooked: string[];
}

export interface NodeSettings {
  readonly processesPerSession?: number;
  readonly onStop?: 'auto' | 'close' | 'keep';
  readonly init?: SessionEngineOptions<Vars>['init'];
  /** How often waits look again without a message. @default 5 */
  readonly pollIntervalMs?: number;
  /** Holds pub/sub messages that start with one of these (e.g. 'N ') while `held.on` is true. */
  readonly held?: HeldMessages;
  /** @default the store's (60 000) */
  readonly graceMs?: number;
  /** @default 1 000 */
  readonly sweepIntervalMs?: number;
}

export async function node(r: RedisForTest, clock: ManualClock, settings: NodeSettings = {}): Promise<Node> {
  const client = await r.client();
  if (settings.held !== undefined) holdMessagesOf(client, settings.held);
  const hooked: string[] = [];
  const engine = new SessionEngine<Vars>({
    clock, closeTimeoutMs: 10_000, processesPerSession: settings.processesPerSession ?? 1, onClose: (proc) => { hooked.push(proc.processId); },
    ...(settings.init === undefined ? {} : { init: settings.init }),
    store: createRedisStore({ redis: client, prefix: r.prefix, pollIntervalMs: settings.pollIntervalMs ?? 5, sweepIntervalMs: settings.sweepIntervalMs ?? 1_000, onStop: settings.onStop ?? 'auto', ...(settings.graceMs === undefined ? {} : { graceMs: settings.graceMs }) }),
  });
  const errors: SessionError[] = [];
  engine.on('error', (error) => errors.push(error));
  return { engine, client, errors, hooked };
}

/** Pub/sub messages of a node held back while `on`; `deliver()` hands them to the store in order. */
export class HeldMessages {
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
export function wrapScript(client: Redis, name: string, wrap: (original: Script) => Script): void {
  const scripts = client as unknown as Record<string, Script>;
  const original = scripts[name]!.bind(client);
  scripts[name] = wrap(original);
}

/** The next enters run in Redis at once; their replies reach the store only once `deliver()` is called. */
export function holdEnterReplies(client: Redis): { sent: Promise<void>; deliver(): void } {
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
export function claimAnswered(client: Redis): Promise<void> {
  return new Promise<void>((resolve) => {
    wrapScript(client, 'lwsClaim', (claim) => async (...args) => {
      const reply = await claim(...args);
      setImmediate(resolve);
      return reply;
    });
  });
}

/** The session's processes are all free in Redis (a release is written after the response, asynchronously). */
export function idleInRedis(r: RedisForTest, id: string): Promise<boolean> {
  return eventually(async () => {
    const fields = await r.redis.hgetall(`${r.prefix}s:${id}`);
    const busy = Object.entries(fields).filter(([name]) => name.startsWith('b:'));
    return busy.length > 0 && busy.every(([, value]) => value === '0');
  }, 5_000);
}

/** True once the session's close is claimed in Redis (its key marked closing), false if not within 5 s. */
export function closingInRedis(r: RedisForTest, id: string): Promise<boolean> {
  return eventually(async () => (await r.redis.hget(`${r.prefix}s:${id}`, 'st')) === 'c', 5_000);
}

/**
 * True once `work` settles while the clock moves on 2 s at a time (a close giving up on a request at
 * closeTimeoutMs, a drain bounded on the clock), false if not within 5 s of real time.
 */
export function settledAsTimePasses(clock: ManualClock, work: { readonly settled: boolean }): Promise<boolean> {
  return eventually(() => { clock.advance(2_000); return work.settled; }, 5_000);
}

/**
 * Makes `running` (a request or task of a session on x) run under a companion handle: y regenerates its
 * session while x does not hear of it, a request with the new id reaches x first (x makes the new id's
 * own handle, the primary) and leaves, then x hears of the rename. Needs a node x made with `held`
 * (holding 'N ') and, for a request, `processesPerSession: 2`. Returns the new id and a WeakRef to the
 * primary handle (for leak checks: nothing else keeps it).
 */
export async function runAsCompanion(r: RedisForTest, x: Node, y: Node, held: HeldMessages, oldId: string): Promise<{ newId: string; primary: WeakRef<object> }> {
  held.on = true;
  const newId = await y.engine.regenerate(oldId);
  assert.equal(typeof newId, 'string', 'y regenerated the session');
  assert.ok(await eventually(() => held.count > 0, 5_000), 'x got the rename (held)');
  const b = await x.engine.acquire({ sessionId: newId!, ip: IP });
  assert.equal(b.sessionId, newId, 'the new id is served on x before x hears of the rename');
  const primary = new WeakRef(b.session as object);
  const pid = b.proc.processId;
  b.release();
  assert.ok(await eventually(async () => (await r.redis.hget(`${r.prefix}s:${newId!}`, `b:${pid}`)) === '0', 5_000), 'its release landed');
  held.deliver();
  return { newId: newId!, primary };
}

/** Ends whatever a failed assertion left running, so the engines stop (the ManualClock never moves on its own). */
export async function stopAll(clock: ManualClock, leases: (RequestLease<Vars> | undefined)[], closing: { settled: boolean } | undefined, ...nodes: Node[]): Promise<void> {
  for (const lease of leases) lease?.release();
  if (closing?.settled !== true) clock.advance(60_000);
  const stopping = Promise.all(nodes.map((n) => n.engine.stop()));
  // A stop whose bounds are timers set after the advance above (work a failed assertion left pending)
  // would wait for a clock that never moves, and the test would end in a bare timeout instead of its
  // assertion's error: after a second of real time, the clock moves on until the stops end.
  const stopped = { settled: false };
  const done = (): void => { stopped.settled = true; };
  stopping.then(done, done);
  if (!(await eventually(() => stopped.settled, 1_000))) await settledAsTimePasses(clock, stopped);
  await stopping;
}

/** Keys of the run's sessions in Redis (`P s:<id>`). */
export async function sessionKeys(r: RedisForTest): Promise<string[]> {
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
export function countMulti(client: Redis): { readonly calls: number } {
  const counter = { calls: 0 };
  const multi = client.multi.bind(client) as (...args: unknown[]) => ReturnType<Redis['multi']>;
  (client as unknown as { multi: (...args: unknown[]) => ReturnType<Redis['multi']> }).multi = (...args) => {
    counter.calls++;
    return multi(...args);
  };
  return counter;
}

export const turnsOfTheLoop = async (count: number): Promise<void> => {
  for (let i = 0; i < count; i++) await new Promise<void>((resolve) => setImmediate(resolve));
};

/** A node whose subscriber can be made deaf (it loses every message, as across a cut) and cut. */
export interface DeafNode extends Node {
  /** While true, the node's subscriber loses every message. */
  deaf: boolean;
  readonly subscriber: () => Redis;
}

/**
 * Node x on `client` options of its own (both connections reconnect: the test clients do not by
 * default); its subscriber (a duplicate of the client) reconnects 20 ms after a cut.
 */
export async function deafNode(r: RedisForTest, clock: ManualClock, clientOptions: RedisOptions = { retryStrategy: () => 20 }): Promise<DeafNode> {
  const client = await r.client(clientOptions);
  let subscriber: Redis | undefined;
  const hearing = { deaf: false };
  const duplicate = client.duplicate.bind(client);
  client.duplicate = (override?: Parameters<Redis['duplicate']>[0]) => {
    const made = duplicate({ ...override, retryStrategy: () => 20 });
    const emit = made.emit.bind(made);
    made.emit = (event: string | symbol, ...rest: unknown[]): boolean => (event === 'message' && hearing.deaf ? true : emit(event, ...rest));
    subscriber = made;
    return made;
  };
  const errors: SessionError[] = [];
  const engine = new SessionEngine<Vars>({
    clock, closeTimeoutMs: 10_000,
    store: createRedisStore({ redis: client, prefix: r.prefix, pollIntervalMs: 5, sweepIntervalMs: 1_000 }),
  });
  engine.on('error', (e) => errors.push(e));
  return {
    engine, client, errors, hooked: [],
    get deaf() { return hearing.deaf; },
    set deaf(value: boolean) { hearing.deaf = value; },
    subscriber: () => { assert.ok(subscriber !== undefined, 'the store made its subscriber'); return subscriber; },
  };
}

/** What a sweep sees of a node whose beats stopped two leases ago: no lease key, missing since a lease. */
/** What a test with a deaf node x and a hearing node y works with; `closing` and `leases` are stopped with the nodes. */
export interface DeafAndHearing {
  readonly r: RedisForTest;
  readonly clock: ManualClock;
  readonly x: DeafNode;
  readonly y: Node;
  readonly leases: (RequestLease<Vars> | undefined)[];
  closing: { readonly settled: boolean } | undefined;
}

/**
 * Runs `body` with a deaf node x (deafNode, on `clientOptions`) and a node y on the test's Redis; then x
 * hears again and both stop, with the leases the body took and the close it started.
 */
export async function withDeafNode(t: TestContext, body: (nodes: DeafAndHearing) => Promise<void>, clientOptions?: RedisOptions): Promise<void> {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const x = await deafNode(r, clock, clientOptions);
  const y = await node(r, clock);
  const nodes: DeafAndHearing = { r, clock, x, y, leases: [], closing: undefined };
  try {
    await body(nodes);
  } finally {
    x.deaf = false;
    await stopAll(clock, nodes.leases, nodes.closing, x, y);
  }
}

export async function lookDead(r: RedisForTest, nodeId: string, leaseMs: number): Promise<void> {
  const [seconds, micros] = await r.redis.time();
  const nowMs = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  await r.redis.multi().del(`${r.prefix}node:${nodeId}`).set(`${r.prefix}missing:${nodeId}`, String(nowMs - leaseMs - 1), 'PX', 60_000).exec();
}

/** Stops the engines, their clocks moving on meanwhile (a drain bounded on a clock that never moves would wait forever). */
export async function stopWithClocks(nodes: readonly { readonly engine: SessionEngine<Vars>; readonly clock: ManualClock }[]): Promise<void> {
  const stopped = { settled: false };
  const stopping = Promise.all(nodes.map((n) => n.engine.stop())).finally(() => { stopped.settled = true; });
  await eventually(() => { for (const n of nodes) n.clock.advance(5_000); return stopped.settled; }, 10_000);
  await stopping;
}
