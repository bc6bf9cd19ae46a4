// createRedisStore checks its prefix (no spaces, no '%'), but let through an unpaired surrogate, which
// the store's own RedisLockManager refuses: the engine's constructor then threw an error about an
// option the caller never gave (RedisLockManager's), after the store had opened its two Redis
// connections, which nothing closes: the process never exits.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SessionEngine, SessionOptionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';

const sockets = (): number => process.getActiveResourcesInfo().filter((kind) => kind === 'TCPSocketWrap').length;

test('Redis: a prefix with an unpaired surrogate is refused by createRedisStore, and leaves no connection open', { timeout: 10_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const before = sockets();
  let refused: unknown;
  try {
    new SessionEngine({ store: createRedisStore({ url: r.url, prefix: `${r.prefix}\uD800:` }) });
  } catch (error) {
    refused = error;
  }
  assert.ok(refused instanceof SessionOptionError, 'refused as an option');
  assert.match(refused.message, /createRedisStore: prefix/, 'by the option the caller gave');
  // Give a connection that was opened time to show.
  await eventually(() => sockets() > before, 300);
  assert.equal(sockets(), before, 'no Redis connection left open');
});
