import { SessionArgumentError, SessionOptionError } from '../errors.js';
import { Redis, type RedisOptions } from 'ioredis';
import { describe } from '../options.js';
import type { SessionVars } from '../process.js';
import type { AttachedStore, SessionStore, StoreContext } from '../store.js';
import { coalesceWritesOf, defineCoalescedCommand } from './coalesce.js';
import type { RedisSettings, StoreCommands } from './node.js';
import { STORE_SCRIPTS } from './scripts.js';
import { RedisSessions } from './sessions.js';

export { RedisLockManager, type ProcessFence, type RedisLockManagerOptions } from './locks.js';

/** Options of `createRedisStore`. */
export interface RedisStoreOptions {
  /** Where Redis is, e.g. `redis://127.0.0.1:6379`. Either `url` or `redis`. */
  readonly url?: string;
  /** A client of your own (ioredis, without a `keyPrefix`: use `prefix`); the store duplicates it for pub/sub and never closes it. */
  readonly redis?: Redis;
  /** Put before every key and the channel, so several applications share one Redis. @default 'lws:' */
  readonly prefix?: string;
  /** A node that has not renewed its lease this long is dead: its requests' processes are freed and its closes taken over. @default 10_000 */
  readonly nodeLeaseMs?: number;
  /** How long a session's keys outlive its timeout in Redis (a crashed cluster leaves nothing behind). @default 60_000 */
  readonly graceMs?: number;
  /** How often each node claims the sessions whose inactivity deadline passed (on the engine's clock). @default 1_000 */
  readonly sweepIntervalMs?: number;
  /** How often a waiting request or close looks again when no pub/sub message came. @default 250 */
  readonly pollIntervalMs?: number;
  /**
   * What `engine.stop()` does to the sessions: `'auto'` closes them with 'shutdown' when no other node is
   * alive (the cluster stops), `'close'` always, `'keep'` never (a rolling restart keeps every session).
   * @default 'auto'
   */
  readonly onStop?: 'auto' | 'close' | 'keep';
  /**
   * Bytes of process state a node keeps copies of (the states it wrote last, the oldest dropped first),
   * so a returning visitor on the node that served it last brings no state from Redis. 0: no copies.
   * @default 16 MiB
   */
  readonly stateCopyBytes?: number;
  /**
   * The largest process state (serialized) a release writes: a larger one is not stored
   * (`ERR_SESSION_STATE_NOT_STORABLE`, the state saved before kept), as a value that cannot be cloned.
   * Keep it below what your Redis takes in one argument (`proto-max-bulk-len`: 512 MB by default, lower
   * on some hosted services), or Redis refuses the release and the node retries it until it stops.
   * @default 16 MiB
   */
  readonly maxStateBytes?: number;
  /**
   * How long a command of the store's own client (`url`) may go unanswered before it fails (503 for its
   * request): a Redis that stops answering without closing the connection cannot hold requests, closes
   * or `stop()` for ever. A client of your own (`redis`) keeps its own settings. @default 10_000
   */
  readonly commandTimeoutMs?: number;
}

const KNOWN = new Set(['url', 'redis', 'prefix', 'nodeLeaseMs', 'graceMs', 'sweepIntervalMs', 'pollIntervalMs', 'onStop', 'stateCopyBytes', 'maxStateBytes', 'commandTimeoutMs']);

function positiveInteger(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 0x7fffffff) {
    throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', `createRedisStore: ${name} must be an integer from 1 to ${0x7fffffff} (ms), got ${describe(value)}`);
  }
  return value;
}

function byteBudget(name: string, value: unknown, fallback: number, least = 0): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < least) {
    throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', `createRedisStore: ${name} must be an integer >= ${least} (bytes), got ${describe(value)}`);
  }
  return value;
}

/**
 * Sessions in Redis, shared by every node (Node process) of a cluster behind any load balancer:
 * the global cap, eviction, timeouts, closeSession and record locks work cluster-wide, and `onClose`
 * runs once per process on the node that claimed the close. Requires `ioredis` (an optional peer
 * dependency). One store per engine.
 *
 * @example
 * import { SessionEngine } from 'legacy-web-sessions';
 * import { createRedisStore } from 'legacy-web-sessions/redis';
 * const engine = new SessionEngine({ store: createRedisStore({ url: 'redis://127.0.0.1:6379', prefix: 'shop:' }) });
 */
export function createRedisStore(options: RedisStoreOptions): SessionStore {
  if (typeof options !== 'object' || options === null) throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', `createRedisStore(options): options must be an object, got ${describe(options)}`);
  for (const key of Object.keys(options)) if (!KNOWN.has(key)) throw new SessionOptionError('ERR_SESSION_UNKNOWN_OPTION', `createRedisStore: unknown option ${describe(key)} (known: ${[...KNOWN].join(', ')})`);
  const { url, redis, prefix = 'lws:', onStop = 'auto' } = options;
  if ((url === undefined) === (redis === undefined)) throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', 'createRedisStore: give either url or redis');
  if (url !== undefined && typeof url !== 'string') throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', `createRedisStore: url must be a string, got ${describe(url)}`);
  if (redis !== undefined && typeof redis?.duplicate !== 'function') throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', 'createRedisStore: redis must be an ioredis client');
  // The store's scripts name their keys themselves from `prefix`, where ioredis would put its keyPrefix
  // before the keys of plain commands only: the two would name different keys.
  if (redis !== undefined && (redis.options?.keyPrefix ?? '') !== '') {
    throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', `createRedisStore: a client with a keyPrefix (${describe(redis.options.keyPrefix)}) is not supported: give the prefix as the store's prefix option, on a client without one`);
  }
  // Unpaired surrogates as RedisLockManager (which gets this prefix) refuses them: said here, about this option.
  if (typeof prefix !== 'string' || prefix.length === 0 || prefix.length > 256 || /[\s%]/.test(prefix) || /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(prefix)) {
    throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', `createRedisStore: prefix must be 1 to 256 characters without spaces, '%' or unpaired surrogates, got ${describe(prefix)}`);
  }
  if (onStop !== 'auto' && onStop !== 'close' && onStop !== 'keep') throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', `createRedisStore: onStop must be 'auto', 'close' or 'keep', got ${describe(onStop)}`);
  const commandTimeoutMs = positiveInteger('commandTimeoutMs', options.commandTimeoutMs, 10_000);
  const settings: RedisSettings = {
    prefix,
    onStop,
    nodeLeaseMs: positiveInteger('nodeLeaseMs', options.nodeLeaseMs, 10_000),
    graceMs: positiveInteger('graceMs', options.graceMs, 60_000),
    sweepIntervalMs: positiveInteger('sweepIntervalMs', options.sweepIntervalMs, 1_000),
    pollIntervalMs: positiveInteger('pollIntervalMs', options.pollIntervalMs, 250),
    stateCopyBytes: byteBudget('stateCopyBytes', options.stateCopyBytes, 16 * 1024 * 1024),
    maxStateBytes: byteBudget('maxStateBytes', options.maxStateBytes, 16 * 1024 * 1024, 1),
  };
  let attached = false;
  return {
    attach<Vars extends SessionVars>(context: StoreContext<Vars>): AttachedStore<Vars> {
      if (attached) throw new SessionArgumentError('a Redis store serves one engine: make one createRedisStore() per engine');
      attached = true;
      // During an outage commands fail at once (503) instead of queueing until Redis is back, and so do
      // the ones on their way when the connection is cut (never sent again: Redis may have run them;
      // what they left is repaired by the node's sweeps, REPAIR). One that goes unanswered fails too.
      // No auto-pipelining: it costs more CPU per command than the writes it saves (measured: 17 vs 13 µs
      // per script call, and 0.145x -> 0.18x of bare node:http in npm run bench -- --redis). The scripts'
      // writes of one turn leave together instead (coalesce.ts), and the releases of one turn are one
      // call (ScriptBatches).
      const clientOptions: RedisOptions = {
        enableOfflineQueue: false, maxRetriesPerRequest: 0, autoResendUnfulfilledCommands: false, commandTimeout: commandTimeoutMs,
        lazyConnect: false, enableAutoPipelining: false,
      };
      const commands = (redis ?? new Redis(url!, clientOptions)) as StoreCommands;
      // Only a client of the store's own: on the application's, the cork would hold its commands too.
      if (redis === undefined) coalesceWritesOf(commands);
      const subscriber = commands.duplicate({ enableOfflineQueue: true });
      // Without a listener ioredis prints every connection error; the failed commands report them.
      for (const client of [commands, subscriber]) client.on('error', () => {});
      for (const [name, script] of Object.entries(STORE_SCRIPTS)) defineCoalescedCommand(commands, name, { lua: script, numberOfKeys: 0 });
      // The command connection is closed only when it is the store's own (`ownCloses` runs first).
      const closeClients = async (ownCloses: () => void): Promise<void> => {
        subscriber.disconnect();
        if (redis !== undefined) return;
        ownCloses();
        await commands.quit().catch(() => commands.disconnect());
      };
      try {
        return new RedisSessions<Vars>(context, commands, subscriber, settings, closeClients);
      } catch (error) {
        // Refused (a RedisLockManager check): the connections just opened must not keep the process alive.
        subscriber.disconnect();
        if (redis === undefined) commands.disconnect();
        throw error;
      }
    },
  };
}
