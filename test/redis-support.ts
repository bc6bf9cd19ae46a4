import { randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis, type RedisOptions } from 'ioredis';
import { monitorCommands } from './redis-monitor.js';

/** Where the Redis tests connect: `REDIS_URL`, or a local Redis on the default port. */
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** How long a test waits for Redis to answer PING before it skips (or fails, in CI). */
const READY_WITHIN_MS = 5_000;

/** What a Redis test works with. */
export interface RedisForTest {
  /** A connected client, quit after the test. */
  readonly redis: Redis;
  /** Unique to this test (`lws-test:<random>:`): every key the test writes must start with it. */
  readonly prefix: string;
  readonly url: string;
  /** Another connected client (another node of the cluster), quit after the test. */
  client(options?: RedisOptions): Promise<Redis>;
}

// Test clients fail fast: a command against a Redis that went away rejects at once instead of waiting
// for reconnects, so a broken Redis shows as a failed test, never as a hung one.
const TEST_CLIENT: RedisOptions = { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, connectTimeout: 1_000 };

// Probed once per test file: when Redis is down, the first test waits READY_WITHIN_MS, the others skip at once.
let unreachable: string | undefined;
let warned = false;

async function connect(url: string, options: RedisOptions = {}): Promise<Redis> {
  const client = new Redis(url, { ...TEST_CLIENT, ...options });
  // Errors reach the commands that fail; without a listener ioredis also prints each one. The event
  // carries the cause (ECONNREFUSED…) where a failed connect() only says "Connection is closed".
  let socketError: unknown;
  client.on('error', (error: unknown) => { socketError = error; });
  try {
    await client.connect();
    await client.ping();
    return client;
  } catch (error) {
    client.disconnect();
    throw socketError ?? error;
  }
}

async function connectWithin(url: string, ms: number): Promise<Redis> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await connect(url);
    } catch (error) {
      if (Date.now() >= deadline) throw error;
      await delay(200);
    }
  }
}

/** Deletes every key under `prefix` (SCAN + UNLINK: never KEYS, never FLUSHDB on a shared Redis). */
export async function deleteKeys(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await redis.unlink(...keys);
  } while (cursor !== '0');
}

/**
 * A Redis client and a key prefix of its own for one test, cleaned up when the test ends (keys under the
 * prefix deleted, clients quit). When Redis does not answer PING within 5 s the test is skipped with a
 * message naming REDIS_URL, and a warning is printed; with `CI=true` it fails instead, because a CI run
 * that skipped every Redis test would pass without testing anything.
 *
 * @example
 * ```ts
 * test('…', async (t) => {
 *   const r = await redisForTest(t);
 *   if (r === undefined) return; // skipped
 *   const other = await r.client();
 * });
 * ```
 */
export async function redisForTest(t: TestContext): Promise<RedisForTest | undefined> {
  let redis: Redis;
  try {
    if (unreachable !== undefined) throw new Error(unreachable);
    redis = await connectWithin(REDIS_URL, READY_WITHIN_MS);
  } catch (error) {
    unreachable ??= error instanceof Error ? error.message : String(error);
    const message = `Redis is not reachable at REDIS_URL=${REDIS_URL} (${unreachable}); start one or set REDIS_URL`;
    if (process.env.CI === 'true') throw new Error(`${message}. CI=true: Redis tests must run, not skip.`, { cause: error });
    if (!warned) {
      warned = true;
      console.warn(`\n⚠ SKIPPING REDIS TESTS: ${message}\n`);
    }
    t.skip(message);
    return undefined;
  }

  const prefix = `lws-test:${randomBytes(8).toString('hex')}:`;
  const clients: Redis[] = [redis];
  t.after(async () => {
    try {
      await deleteKeys(redis, prefix);
    } finally {
      await Promise.all(clients.map((client) => client.quit().catch(() => client.disconnect())));
    }
  });
  return {
    redis,
    prefix,
    url: REDIS_URL,
    async client(options) {
      const client = await connect(REDIS_URL, options);
      clients.push(client);
      return client;
    },
  };
}

/**
 * Every command Redis runs from now on, as text (MONITOR on a socket of its own: redis-monitor.ts): to
 * check what a store sends, e.g. that no client-made value reaches a key name. `stop()` ends the watching.
 */
export function watchCommands(r: RedisForTest): Promise<{ readonly seen: string[]; stop(): void }> {
  return monitorCommands(r.url);
}
