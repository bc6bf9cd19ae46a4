// The keys the Redis benchmark servers leave (they stop with onStop: 'keep'), deleted after a run.

import { Redis } from 'ioredis';
import { BENCH_REDIS_PREFIX, BENCH_REDIS_URL } from './protocol.js';

/** Deletes every key under the benchmark's prefix (SCAN + UNLINK, never KEYS or FLUSHDB). */
export async function deleteBenchKeys(): Promise<void> {
  const client = new Redis(BENCH_REDIS_URL);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${BENCH_REDIS_PREFIX}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await client.unlink(...keys);
    } while (cursor !== '0');
  } finally {
    client.disconnect();
  }
}
