import type { Redis } from 'ioredis';
import type { SessionVars } from '../process.js';
import type { StoreContext } from '../store.js';
import type { RedisCloser } from './closer.js';
import type { ClusterOptions } from './cluster-options.js';
import type { NodeServices, SessionHandle } from './node.js';
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
  readonly options: ClusterOptions<Vars>;
  /** Renews this node's lease at once: a stopping node asks who is alive ('h'). */
  readonly beat?: () => void;
}

/**
 * One message of the store's channel (layout in scripts.ts): 'c <id>' a close was claimed, 'r <id>' a
 * process was released, 'x <id>' a close finished, 'N <old> <new>' a rename ('n <old>' from nodes of
 * earlier versions), 'o <node> <name> <json>' an option was set, 'h' a stopping node asks every node
 * to beat now. A message can be lost in a reconnect: every wait it ends also polls, and a node's view of
 * a session heals at its next request.
 */
export function onStoreMessage<Vars extends SessionVars>(to: MessageTargets<Vars>, message: string): void {
  const kind = message[0];
  const rest = message.slice(2);
  if (kind === 'c') {
    // A closing session's state stays in this node's memory no longer than it must (its id is dead).
    to.node.copies.drop(rest);
    // Read after this node learnt the close had ended (its own FINISH answered on the command
    // connection, or its join found the key gone, before the subscriber delivered 'c'; the 'x' behind it
    // may be lost in a cut): nothing new. Remembered as under way again, it would let an enter's reply
    // read later start its request in the closed session's context (not torn down: no resurrection).
    if (to.closer.waits.closeFinished(rest)) return;
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
  } else if (kind === 'h') {
    to.beat?.();
  } else if (kind === 'o') {
    // '<node>@<version>' (a node of an earlier version sends its id alone: no version).
    const [sender = '', name, ...json] = rest.split(' ');
    const at = sender.indexOf('@');
    const node = at < 0 ? sender : sender.slice(0, at);
    if (node !== to.node.nodeId && name !== undefined) to.options.heard(name, json.join(' '), at < 0 ? undefined : Number(sender.slice(at + 1)));
  }
}

/**
 * Listens on the store's channel. Messages sent while the subscriber was cut are lost: once it has
 * subscribed again, the sessions this node knows are checked in Redis (checkKnown), so that work hears a
 * close it missed ('c': its signal aborts) or one that ended meanwhile ('x': it is torn down, as the
 * memory store tears down its stragglers) instead of running live in a closed session to its end, and
 * sessions closed meanwhile are not kept here for good.
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
 * checkKnown once the subscriber is back, tried again until it has run through: a cut seldom takes
 * the subscriber alone (a Redis restart cuts both connections), and the command connection, which fails
 * fast while it is down, may come back later; a check lost then would leave the stragglers live.
 */
async function recheck<Vars extends SessionVars>(subscriber: Redis, to: MessageTargets<Vars>): Promise<void> {
  const { retries } = to.node;
  for (let attempt = 0; !retries.stopped; attempt++) {
    try {
      // 'ready' comes before the resubscription is sent: a PING answered after it says it is in place.
      await subscriber.ping();
      await checkKnown(to);
      // Options other nodes set meanwhile ('o' lost too), an option this node set earlier included: only
      // one whose own write is still on its way (it lands after what was read) keeps this node's value.
      await to.options.applyAfterCut();
      return;
    } catch {
      // Cut again: the next 'ready' checks anew. Else the command connection is not back yet: again later.
      if (subscriber.status !== 'ready') return;
      await retries.wait(attempt);
    }
  }
}

/** Sessions whose state one round trip of checkKnown reads. */
const CHECK_CHUNK = 256;

/**
 * What the 'c' and 'x' messages lost in a cut would have told, read from Redis for every session this
 * node knows or keeps a state copy of: work of a session closing hears its close, work of one whose close
 * ended is torn down (as the memory store tears down its stragglers), and a session no longer open with
 * no work here is forgotten (its handle, listed by sessions(), and its copy), which only a request with
 * its dead id reaching this node did before. A close this node runs is left to it.
 */
async function checkKnown<Vars extends SessionVars>(to: MessageTargets<Vars>): Promise<void> {
  const { redis, settings, copies } = to.node;
  const running = (handle: SessionHandle<Vars>): boolean => handle.state !== 'closed' && handle.processesHere().length > 0;
  const ids = [...new Set([...to.known.keys(), ...copies.sessionIds()])];
  for (let i = 0; i < ids.length; i += CHECK_CHUNK) {
    const chunk = ids.slice(i, i + CHECK_CHUNK);
    const replies = await redis.pipeline(chunk.map((id) => ['hget', `${settings.prefix}s:${id}`, 'st'])).exec();
    for (const [k, id] of chunk.entries()) {
      const [error, st] = replies?.[k] ?? [new Error('no reply')];
      if (error !== null) throw error;
      // Only a close this node runs: one another node announced ('c' heard before the cut) may have
      // ended during it, its 'x' lost, and its stragglers here must hear that end.
      if (st === 'o' || to.closer.runsClose(id)) continue;
      copies.drop(id);
      const handle = to.known.get(id);
      if (handle === undefined || handle.id !== id) continue; // renamed meanwhile
      if (running(handle)) {
        if (st === 'c' && !handle.closeStarted) onStoreMessage(to, `c ${id}`);
        // Gone, and not to a new id (lwsLeft follows a rename this node missed too): its close has ended.
        else if (st === null && await sessionLeftRedis(redis, settings, id) === true && handle.id === id) onStoreMessage(to, `x ${id}`);
      } else if (handle.idleHere) {
        // As a 'c' heard would (onStoreMessage): also remembered as under way, so an enter that landed
        // before the claim, its reply read after this, starts its request closing (RedisRequestPath #handle).
        if (st === 'c') onStoreMessage(to, `c ${id}`);
        else {
          handle.markClosing();
          to.known.delete(id);
        }
      }
    }
  }
}
