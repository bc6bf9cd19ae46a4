// The two stores a behaviour is checked on, one test per store: the memory store, and the Redis store
// on the run's own key prefix (skipped with a message when Redis is unreachable outside CI).
import type { TestContext } from 'node:test';
import type { SessionStore } from '../src/index.js';
import { createRedisStore, type RedisStoreOptions } from '../src/redis/index.js';
import { redisForTest, type RedisForTest } from './redis-support.js';

/** `options` to spread into the engine's (none for the memory store, the default); `redis`: the test's own client and prefix. */
export type StoreChoice = { readonly options: { readonly store?: SessionStore }; readonly redis?: RedisForTest } | 'skip';

export function storeChoices(redisOptions: Omit<RedisStoreOptions, 'url' | 'redis' | 'prefix'> = {}): Array<[string, (t: TestContext) => Promise<StoreChoice>]> {
  return [
    ['memory store', async () => ({ options: {} })],
    ['Redis store', async (t) => {
      const r = await redisForTest(t);
      return r === undefined ? 'skip' : { options: { store: createRedisStore({ ...redisOptions, url: r.url, prefix: r.prefix }) }, redis: r };
    }],
  ];
}
