// The cluster of test/property-redis-stragglers.test.ts: two engines (nodes) on one Redis prefix in one
// process, on one ManualClock, each subscriber able to lose pub/sub messages; and the operations the
// property interleaves on them (requests and tasks that hold and resume, logouts, closes from either
// node, slow inits, the clock past closeTimeoutMs and the session timeout, a node's stop()).
import fc from 'fast-check';
import type { Redis } from 'ioredis';
import { ManualClock, SessionEngine, type RequestLease, type SessionError, type WebProcess } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { deferred } from './helpers.js';
import type { RedisForTest } from './redis-support.js';

export type Vars = Record<string, unknown>;
export const IP = '127.0.0.1';
/** closeTimeoutMs: the drain gives up on a request or task after it (a straggler). */
export const CLOSE_TIMEOUT_MS = 5_000;
/** inactiveProcessTimeoutMs. */
export const TIMEOUT_MS = 60_000;
export const RECORDS = 3;
export const LOCK_TABLE = 'T';

export type NodeIx = 0 | 1;
export type Kind = 'c' | 'r' | 'x';

export type Op =
  | { t: 'new'; n: NodeIx; hold: boolean; slow: boolean }
  | { t: 'return'; n: NodeIx; s: number; hold: boolean; slow: boolean }
  | { t: 'step'; k: number; rec: number }
  | { t: 'release'; k: number }
  | { t: 'logout'; k: number }
  | { t: 'spawn'; k: number; slow: boolean }
  | { t: 'taskStep'; k: number; rec: number }
  | { t: 'taskEnd'; k: number }
  | { t: 'initDone' }
  | { t: 'closeOut'; n: NodeIx; s: number }
  | { t: 'advance'; ms: number }
  | { t: 'lose'; n: NodeIx; kinds: readonly Kind[] }
  | { t: 'stop'; n: NodeIx }
  | { t: 'hold'; n: NodeIx; kinds: readonly Kind[] }
  | { t: 'deliver'; n: NodeIx }
  | { t: 'holdReplies'; n: NodeIx }
  | { t: 'deliverReplies'; n: NodeIx };

const ix = fc.nat({ max: 7 });
const nodeIx = fc.constantFrom<NodeIx>(0, 1);
const rec = fc.nat({ max: RECORDS - 1 });
export const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ t: fc.constant('new' as const), n: nodeIx, hold: fc.boolean(), slow: fc.constantFrom(false, false, true) }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('return' as const), n: nodeIx, s: ix, hold: fc.boolean(), slow: fc.constantFrom(false, false, true) }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('step' as const), k: ix, rec }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('release' as const), k: ix }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('logout' as const), k: ix }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('spawn' as const), k: ix, slow: fc.constantFrom(false, false, true) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('taskStep' as const), k: ix, rec }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('taskEnd' as const), k: ix }) },
  { weight: 1, arbitrary: fc.constant({ t: 'initDone' as const }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('closeOut' as const), n: nodeIx, s: ix }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('advance' as const), ms: fc.constantFrom(1_000, CLOSE_TIMEOUT_MS / 2, CLOSE_TIMEOUT_MS + 1, TIMEOUT_MS + 1_000) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('lose' as const), n: nodeIx, kinds: fc.subarray<Kind>(['c', 'r', 'x']) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('stop' as const), n: nodeIx }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('hold' as const), n: nodeIx, kinds: fc.subarray<Kind>(['c', 'r', 'x'], { minLength: 1 }) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('deliver' as const), n: nodeIx }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('holdReplies' as const), n: nodeIx }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('deliverReplies' as const), n: nodeIx }) },
);

export const scenarioArb = fc.array(opArb, { minLength: 8, maxLength: 40, size: 'max' });

/**
 * What a node's subscriber lets through: messages of the kinds in `lose` are dropped, those in `hold`
 * kept until `deliver()`; `delivered` what reached the store.
 */
export class LossyMessages {
  lose = new Set<Kind>();
  hold = new Set<Kind>();
  readonly delivered = new Set<string>();
  readonly #held: (() => void)[] = [];
  dropped = 0;
  heldCount = 0;

  keep(deliver: () => void): void {
    this.heldCount++;
    this.#held.push(deliver);
  }

  deliver(): void {
    this.hold.clear();
    for (const deliver of this.#held.splice(0)) deliver();
  }
}

/** Enter and spawn replies of a node held (Redis ran the script) until `deliver()`. */
export class HeldReplies {
  #gate: Promise<void> | undefined;
  #open: (() => void) | undefined;
  held = 0;

  hold(): void {
    if (this.#gate !== undefined) return;
    this.#gate = new Promise<void>((resolve) => { this.#open = resolve; });
  }

  deliver(): void {
    this.#open?.();
    this.#gate = undefined;
    this.#open = undefined;
  }

  /** Wraps the store's enter and spawn scripts on `client` (once the store has defined them): false if not yet. */
  wrap(client: Redis): boolean {
    const scripts = client as unknown as Record<string, ((...args: unknown[]) => Promise<unknown>) & { wrapped?: true }>;
    for (const name of ['lwsEnterManyBuffer', 'lwsSpawn']) {
      const original = scripts[name];
      if (original === undefined) return false;
      if (original.wrapped === true) continue;
      const bound = original.bind(client);
      const wrapped = Object.assign(async (...args: unknown[]) => {
        const gate = this.#gate;
        const reply = bound(...args);
        if (gate === undefined) return reply;
        this.held++;
        await gate;
        return reply;
      }, { wrapped: true as const });
      scripts[name] = wrapped;
    }
    return true;
  }
}

/** The store subscribes on a duplicate of the client it is given: the duplicate's 'message' events pass through `filter`. */
function filterMessagesOf(client: Redis, filter: LossyMessages): void {
  const duplicate = client.duplicate.bind(client);
  client.duplicate = (...args: Parameters<Redis['duplicate']>) => {
    const subscriber = duplicate(...args);
    const emit = subscriber.emit.bind(subscriber);
    subscriber.emit = (event: string | symbol, ...rest: unknown[]): boolean => {
      if (event !== 'message') return emit(event, ...rest);
      const message = String(rest[1]);
      if (filter.lose.has(message[0] as Kind)) {
        filter.dropped++;
        return true;
      }
      if (filter.hold.has(message[0] as Kind)) {
        filter.keep(() => { filter.delivered.add(message); emit(event, ...rest); });
        return true;
      }
      filter.delivered.add(message);
      return emit(event, ...rest);
    };
    return subscriber;
  };
}

export interface HookSeen {
  readonly pid: string;
  readonly sessionId: string;
  readonly w: unknown;
  readonly node: NodeIx;
}

/** The slow inits: each init that finds `slowNext` set waits until the test resolves it. */
export class Inits {
  slowNext = false;
  readonly waiting: (() => void)[] = [];

  run = async (): Promise<Vars> => {
    if (this.slowNext) {
      this.slowNext = false;
      const gate = deferred();
      this.waiting.push(gate.resolve);
      await gate.promise;
    }
    return { i: 1 };
  };

  resolveOne(): void {
    this.waiting.shift()?.();
  }

  resolveAll(): void {
    for (const resolve of this.waiting.splice(0)) resolve();
  }
}

export interface ClusterNode {
  readonly ix: NodeIx;
  readonly engine: SessionEngine<Vars>;
  readonly client: Redis;
  readonly messages: LossyMessages;
  readonly replies: HeldReplies;
  readonly errors: SessionError[];
  /** Sessions whose 'close' event came on this node (it ran the close: its work there was torn down then). */
  readonly closedHere: Set<string>;
  stopCalled: boolean;
  stopped: boolean;
  /** Engine clock when stop() was called. */
  stopAtMs: number;
}

export async function makeNode(r: RedisForTest, prefix: string, ix: NodeIx, clock: ManualClock, inits: Inits, hooks: HookSeen[]): Promise<ClusterNode> {
  const client = await r.client();
  const messages = new LossyMessages();
  filterMessagesOf(client, messages);
  const engine = new SessionEngine<Vars>({
    clock, closeTimeoutMs: CLOSE_TIMEOUT_MS, inactiveProcessTimeoutMs: TIMEOUT_MS, inactiveSessionTimeoutMs: 1_000 * TIMEOUT_MS,
    maxSessions: 50, maxConcurrentProcesses: 200, processesPerSession: 2, maxQueuedRequests: 4, queueTimeoutMs: 1e9,
    init: inits.run,
    onClose: (proc) => { hooks.push({ pid: proc.processId, sessionId: proc.sessionId, w: proc.vars.w, node: ix }); },
    // Node death is not what this property is about: a lease far longer than a stall of a loaded CI machine
    // (a node whose heartbeat came late was taken for dead, its process freed under a live request).
    store: createRedisStore({ redis: client, prefix, pollIntervalMs: 5, sweepIntervalMs: 1_000, onStop: 'auto', nodeLeaseMs: 120_000 }),
  });
  const errors: SessionError[] = [];
  engine.on('error', (error) => errors.push(error));
  const closedHere = new Set<string>();
  engine.on('close', (event) => closedHere.add(event.sessionId));
  return { ix, engine, client, messages, replies: new HeldReplies(), errors, closedHere, stopCalled: false, stopped: false, stopAtMs: 0 };
}

/** A request the test holds: its handler is blocked between steps until an operation resumes it. */
export interface Req {
  readonly node: NodeIx;
  readonly lease: RequestLease<Vars>;
  readonly pid: string;
  readonly sessionId: string;
  readonly grantSeq: number;
  /** Engine time of the grant. */
  readonly grantAtMs: number;
  endSeq: number | undefined;
  /** Ended by its node's stop() resolving, not by its own release. */
  endedByStop?: boolean;
  /** What this request wrote (vars.w), in order. */
  readonly writes: number[];
}

/** A spawned task the test holds: it waits for the next command between steps. */
export interface Task {
  readonly node: NodeIx;
  readonly sessionId: string;
  proc: WebProcess<Vars> | undefined;
  started: boolean;
  ended: boolean;
  /** Its function returned (after 'end'). */
  finished: boolean;
  /** A close of its session had been asked for when it ended (or it had not ended then). */
  endedAfterClose: boolean;
  readonly writes: number[];
  next: ((command: 'step' | 'end') => void) | undefined;
  stepDone: (() => void) | undefined;
}
