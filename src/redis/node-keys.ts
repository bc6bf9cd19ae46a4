import { realTimer } from '../clock.js';
import type { RedisSettings, Reply, StoreCommands } from './node.js';
import { text } from './node.js';

/**
 * After a call whose reply was lost with its connection (the script may have run): reads what it left,
 * as soon as Redis answers again, for at most a node lease from `sentAtMs` (`performance.now()`); past
 * that, this node may have been taken for dead and its work taken over, and what it reads would prove
 * nothing of its own call. Undefined if Redis did not answer in time.
 */
export async function readAfterLostReply<T>(settings: RedisSettings, sentAtMs: number, read: () => Promise<T>): Promise<T | undefined> {
  for (;;) {
    try {
      return await read();
    } catch {
      if (performance.now() - sentAtMs >= settings.nodeLeaseMs) return undefined;
      await new Promise<void>((resolve) => realTimer(resolve, settings.pollIntervalMs));
    }
  }
}

/**
 * Whether a session this node saw closing has left Redis: its key gone, and not to a new id that lives
 * (a rename this node has not heard of leaves `P mv:<old>`, which outlives the new id's own close). Its
 * close may have ended in a message this node missed, or its claim may still be on its way. Undefined if
 * Redis did not answer within a node lease.
 */
export async function sessionLeftRedis(redis: StoreCommands, settings: RedisSettings, id: string): Promise<boolean | undefined> {
  return readAfterLostReply(settings, performance.now(), async () => await redis.lwsLeft(settings.prefix, id) === 1);
}

/**
 * A node that stops is dead at once for the others (no wait for its lease to run out). It stays in the
 * registry: the next sweep anywhere frees what it could not give back (a save that never landed) and
 * takes over a close it could not finish, then forgets it.
 */
export async function leaveCluster(redis: StoreCommands, settings: RedisSettings, nodeId: string): Promise<void> {
  const { prefix } = settings;
  await redis.multi()
    .del(`${prefix}node:${nodeId}`, `${prefix}stopping:${nodeId}`)
    .set(`${prefix}left:${nodeId}`, '1', 'PX', settings.nodeLeaseMs * 10)
    .exec();
}

/** Gives the keys of every open session at least `ttlMs` to live, a ZSCAN step of them per call. */
export async function extendKeys(redis: StoreCommands, prefix: string, ttlMs: number): Promise<void> {
  let cursor = '0';
  do cursor = text(await redis.lwsExtendKeys(prefix, ttlMs, cursor) as Reply[number]);
  while (cursor !== '0');
}
