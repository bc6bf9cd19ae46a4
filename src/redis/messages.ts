import type { Redis } from 'ioredis';
import type { OptionName } from '../options.js';
import type { SessionVars } from '../process.js';
import type { StoreContext } from '../store.js';
import type { RedisCloser } from './closer.js';
import { unavailable, type NodeServices, type SessionHandle } from './node.js';
import { sessionLeftRedis } from './node-keys.js';
import type { SessionRenames } from './renames.js';
import type { TurnQueues } from './turns.js';

/** What a node's pub/sub messages reach. */
export interface MessageTargets<Vars extends SessionVars> {
  readonly ctx: StoreContext<Vars>;
  readonly node: NodeServices<Vars>;
  readonly known: Map<string, SessionHandle<Vars>>;
  readonly turns: TurnQueues;
  readonly closer: RedisCloser<Vars>;
  readonly renames: SessionRenames<Vars>;
  /** Options set on this node: a stored value read later (applyClusterOptions) does not override them. */
  readonly localOptions: ReadonlySet<string>;
}

/**
 * One message of the store's channel (layout in scripts.ts): 'c <id>' a close was claimed, 'r <id>' a
 * process was released, 'x <id>' a close finished, 'N <old> <new>' a rename ('n <old>' from nodes of
 * earlier versions), 'o <node> <name> <json>' an option was set. A message can be lost in a reconnect:
 * every wait it ends also polls, and a node's view of a session heals at its next request.
 */
export function onStoreMessage<Vars extends SessionVars>(to: MessageTargets<Vars>, message: string): void {
  const kind = message[0];
  const rest = message.slice(2);
  if (kind === 'c') {
    // A closing session's state stays in this node's memory no longer than it must (its id is dead).
    to.node.copies.drop(rest);
    to.closer.waits.closeAnnounced(rest);
    const handle = to.known.get(rest);
    handle?.markClosing();
    if (handle?.idleHere === true) to.known.delete(rest);
  } else if (kind === 'r') {
    to.turns.released(rest);
    to.closer.waits.released(rest);
  } else if (kind === 'x') {
    to.node.copies.drop(rest);
    to.closer.waits.finishedElsewhere(rest); // which calls close-ends.ts closeEnded
  } else if (kind === 'N') {
    const [oldId = '', newId = ''] = rest.split(' ');
    to.renames.renamed(oldId, newId);
  } else if (kind === 'n') {
    // What a node of an earlier version announces (it sends no 'N'); after an 'N' this finds nothing.
    to.turns.wakeHead(rest);
    if (to.known.get(rest)?.id !== rest) return; // renamed here: the handle already moved
    to.known.delete(rest);
  } else if (kind === 'o') {
    const [node, name, ...json] = rest.split(' ');
    if (node !== to.node.nodeId && name !== undefined) applyRemoteOption(to.ctx, name, json.join(' '));
  }
}

/**
 * Listens on the store's channel. Messages sent while the subscriber was cut are lost: once it has
 * subscribed again, the sessions this node runs work of are checked in Redis, so that work hears a close
 * it missed ('c': its signal aborts) or one that ended meanwhile ('x': it is torn down, as the memory
 * store tears down its stragglers) instead of running live in a closed session to its end.
 */
export function listenTo<Vars extends SessionVars>(subscriber: Redis, to: MessageTargets<Vars>): void {
  subscriber.on('message', (_channel: string, message: string) => onStoreMessage(to, message));
  let cut = false;
  subscriber.on('close', () => { cut = true; });
  subscriber.on('ready', () => {
    if (!cut) return;
    cut = false;
    setImmediate(() => void recheck(subscriber, to));
  });
}

/**
 * checkRunning once the subscriber is back, tried again until it has run through: a cut seldom takes
 * the subscriber alone (a Redis restart cuts both connections), and the command connection, which fails
 * fast while it is down, may come back later; a check lost then would leave the stragglers live.
 */
async function recheck<Vars extends SessionVars>(subscriber: Redis, to: MessageTargets<Vars>): Promise<void> {
  const { retries } = to.node;
  for (let attempt = 0; !retries.stopped; attempt++) {
    try {
      // 'ready' comes before the resubscription is sent: a PING answered after it says it is in place.
      await subscriber.ping();
      await checkRunning(to);
      // Options other nodes set meanwhile ('o' lost too).
      await applyClusterOptions(to);
      return;
    } catch {
      // Cut again: the next 'ready' checks anew. Else the command connection is not back yet: again later.
      if (subscriber.status !== 'ready') return;
      await retries.wait(attempt);
    }
  }
}

/** What a lost 'c' or 'x' would have told of the sessions this node runs work of, read from Redis. */
async function checkRunning<Vars extends SessionVars>(to: MessageTargets<Vars>): Promise<void> {
  const { redis, settings } = to.node;
  const running = (handle: SessionHandle<Vars>): boolean => handle.state !== 'closed' && handle.processesHere().length > 0;
  for (const handle of [...to.known.values()]) {
    const id = handle.id;
    if (!running(handle)) continue;
    const st = await redis.hget(`${settings.prefix}s:${id}`, 'st');
    if (handle.id !== id || !running(handle)) continue; // renamed, heard or ended meanwhile
    if (st === 'c' && !handle.closeStarted) onStoreMessage(to, `c ${id}`);
    // Gone, and not to a new id (lwsLeft follows a rename this node missed too): its close has ended.
    else if (st === null && await sessionLeftRedis(redis, settings, id) === true && handle.id === id) onStoreMessage(to, `x ${id}`);
  }
}

/**
 * An option's value as the cluster shares it: JSON, with `undefined` (an option reset to none, such as
 * cookieDomain) as null, which JSON has and no option takes.
 */
export function encodeOption(value: unknown): string {
  return JSON.stringify(value === undefined ? null : value);
}

function decodeOption(json: string): unknown {
  const value: unknown = JSON.parse(json);
  return value === null ? undefined : value;
}

/** The options the cluster has set (kept in Redis), applied here but for those this node set itself. */
export async function applyClusterOptions<Vars extends SessionVars>(to: Pick<MessageTargets<Vars>, 'ctx' | 'node' | 'localOptions'>): Promise<void> {
  const options = await to.node.redis.hgetall(`${to.node.settings.prefix}opts`);
  for (const [name, json] of Object.entries(options)) if (!to.localOptions.has(name)) applyRemoteOption(to.ctx, name, json);
}

/** An option another node set (or set before this node started): validated and applied here. */
export function applyRemoteOption<Vars extends SessionVars>(ctx: StoreContext<Vars>, name: string, json: string): void {
  try {
    ctx.applyOption(name as OptionName, decodeOption(json));
  } catch (error) {
    ctx.report(unavailable(error), 'storeErrors');
  }
}
