import type { Redis } from 'ioredis';
import { SessionError } from '../errors.js';
import type { StoreCommands } from './node.js';

// What a node learns of its Redis before it serves: the connection ready, and whether Redis may delete
// keys on its own.

/** Resolves when the client is connected, rejects after `withinMs`. */
export function connected(redis: Redis, withinMs: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { redis.off('ready', ready); reject(new Error(`Redis not ready after ${withinMs} ms`)); }, Math.min(withinMs, 0x7fffffff));
    timer.unref();
    function ready(): void {
      clearTimeout(timer);
      resolve();
    }
    redis.once('ready', ready);
  });
}

/**
 * Redis's `maxmemory-policy` (anything but `noeviction` deletes keys, sessions among them, once Redis
 * is full: every key of the store has a lifetime, so the `volatile-*` policies too), or undefined when
 * Redis refuses CONFIG (a managed Redis, an ACL) or does not answer: taken on trust then.
 */
export async function evictionPolicy(redis: StoreCommands): Promise<string | undefined> {
  try {
    const reply = await redis.config('GET', 'maxmemory-policy') as unknown[];
    return typeof reply[1] === 'string' ? reply[1] : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Reports a Redis whose `maxmemory-policy` may delete keys (ERR_SESSION_STORE_EVICTS). Resolves whether
 * Redis answered (else it is asked again at the next start).
 */
export async function reportEvictingRedis(redis: StoreCommands, report: (error: SessionError) => void): Promise<boolean> {
  const policy = await evictionPolicy(redis);
  if (policy === undefined) return false;
  if (policy !== 'noeviction') {
    report(new SessionError('ERR_SESSION_STORE_EVICTS', `Redis's maxmemory-policy is ${policy}: set it to noeviction (a full Redis then refuses writes, answered 503, instead of deleting sessions)`));
  }
  return true;
}
