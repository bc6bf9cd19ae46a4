import type { WebProcess, SessionVars } from '../process.js';
import { newSessionId } from '../session-id.js';
import type { RedisLockManager } from './locks.js';
import { readAfterLostReply } from './node-keys.js';
import { keyTtlMs, text, unavailable, waiterStaleMs, type NodeServices, type SessionHandle } from './node.js';
import type { TurnQueues } from './turns.js';

/** The least a regenerated session's forwarding record (P mv:<old>) lives, in ms. */
const MOVED_TTL_FLOOR_MS = 60_000;
/** Renames remembered: a reply to a script that ran just before a rename lands within a round trip of it. */
const RENAMES_KEPT = 1_024;

/**
 * regenerate on the Redis store, on this node: the rename itself, and what this node runs in a renamed
 * session (here or on another node) going on under the new id: its handle re-keyed, its first waiter
 * woken, and a reply to a script that ran just before the rename (read after this node heard of it)
 * taken as about the new id.
 */
export class SessionRenames<Vars extends SessionVars> {
  readonly #node: NodeServices<Vars>;
  /** Sessions this node has served, by id (shared with the store). */
  readonly #known: Map<string, SessionHandle<Vars>>;
  readonly #turns: TurnQueues;
  readonly #lockManager: RedisLockManager;
  /** The latest renames this node heard of, old id → new id, oldest first. */
  readonly #newIdByOld = new Map<string, string>();

  constructor(node: NodeServices<Vars>, known: Map<string, SessionHandle<Vars>>, turns: TurnQueues, lockManager: RedisLockManager) {
    this.#node = node;
    this.#known = known;
    this.#turns = turns;
    this.#lockManager = lockManager;
  }

  /** The id the session known as `id` has now (after any renames this node heard of). */
  current(id: string): string {
    let current = id;
    for (let hop = 0; hop < 8; hop++) {
      const next = this.#newIdByOld.get(current);
      if (next === undefined) break;
      current = next;
    }
    return current;
  }

  /** `engine.regenerate(id)` from this node; `caller` is the process running the call, if any. */
  async regenerate(id: string, caller: WebProcess<Vars> | undefined): Promise<string | null> {
    const { ctx, settings, redis } = this.#node;
    const newId = newSessionId();
    // P mv:<old> must outlive the waiters counted when the rename runs (on every node, whatever its own
    // poll interval) and the work running in the session: as long as its keys, a minute at least.
    const movedTtlMs = Math.max(MOVED_TTL_FLOOR_MS, waiterStaleMs(settings), keyTtlMs(ctx, settings));
    // The caller's own release follows the new id only if it runs here now (a continuation of an
    // earlier request's init or task may call this while that process serves a request elsewhere).
    const handle = this.#known.get(id);
    const callerRunsHere = caller !== undefined && handle?.runs.has(caller) === true;
    // Redis forwards an old id's release only for work other than the caller's: the caller's release
    // (a handler that did not await this call may end first) waits for the reply, then names the new id.
    let renamedHere!: () => void;
    const renaming = callerRunsHere ? new Promise<void>((resolve) => { renamedHere = resolve; }) : undefined;
    if (renaming !== undefined) handle!.renaming = renaming;
    let pids: string;
    try {
      const sentAtMs = performance.now();
      try {
        pids = text(await redis.lwsRename(settings.prefix, id, newId, movedTtlMs, callerRunsHere ? caller.processId : '') as string);
      } catch (error) {
        // A reply lost with its connection: the rename may have run. Not knowing would answer 503 for a
        // session that lives on under an id nobody was given (its client, back on the dead old id, gets
        // a new session, and the renamed one idles to its timeout with the login in it).
        // The id is fresh and random: only this node's rename can have made its key.
        const landed = await readAfterLostReply(settings, sentAtMs, () => redis.hget(`${settings.prefix}s:${newId}`, 'pl'));
        // Redis silent for as long: the caller's release, which may come after any outage, tries the new
        // id when the old one names nothing (the key of a fresh id exists only if this rename ran).
        if (landed === undefined && callerRunsHere) {
          const unsureRenames = (handle!.unsureRenames ??= new Map());
          const unsure = unsureRenames.get(caller.processId);
          if (unsure === undefined) unsureRenames.set(caller.processId, [newId]);
          else unsure.push(newId);
        }
        if (landed === undefined || landed === null) throw unavailable(error, id);
        pids = landed;
      }
      if (pids !== '') this.renamed(id, newId);
    } finally {
      if (renaming !== undefined) {
        if (handle!.renaming === renaming) handle!.renaming = undefined;
        renamedHere();
      }
    }
    if (pids === '') return null;
    // The session has moved: answering anything but its new id would leave the caller without it. The
    // locks' session label (what lockedBy answers) follows in a call of its own; if that fails it is
    // reported and the label stays the old id until the session's next rename relabels them all (a
    // retry later could land after such a rename and put back a dead id).
    try {
      await this.#lockManager.renameSession(pids.split(' '), newId);
    } catch (error) {
      this.#node.ctx.report(unavailable(error, newId), 'storeErrors');
    }
    return newId;
  }

  /**
   * A session was regenerated (here or on another node): what this node runs in it (requests, tasks,
   * whatever their state) goes on under the new id (its release, a logout, its cookie), and the first
   * of its waiters here learns the new id now (its enter says 'moved').
   */
  renamed(oldId: string, newId: string): void {
    this.#newIdByOld.delete(oldId);
    this.#newIdByOld.set(oldId, newId);
    if (this.#newIdByOld.size > RENAMES_KEPT) {
      const oldest = this.#newIdByOld.keys().next();
      if (oldest.done !== true) this.#newIdByOld.delete(oldest.value);
    }
    // This node's waiters follow it now, in their order (a waiter whose client left is no longer counted
    // in the renamed queue, so its enter under the old id could not learn the new one), and the first tries.
    this.#turns.move(oldId, newId);
    this.#turns.wakeHead(newId);
    // The rename moves the session's hash with its fencing counter: a copy of its state is as exact under the new id.
    const { copies } = this.#node;
    const copy = copies.get(oldId);
    if (copy !== undefined) {
      copies.drop(oldId);
      if (copies.get(newId) === undefined) copies.set(newId, copy);
    }
    const handle = this.#known.get(oldId);
    if (handle === undefined || handle.id !== oldId) return;
    this.#known.delete(oldId);
    // Its companions run in the same session: they follow every rename of it, not only the one that
    // joined them to it (their requests' cookies, logouts and releases name the id they have).
    handle.id = newId;
    for (const companion of handle.companions) companion.id = newId;
    const current = this.#known.get(newId);
    if (current === undefined) {
      this.#known.set(newId, handle);
      return;
    }
    // A request with the new id got here first: the id has a handle already. This one's work goes on
    // as its companion (a close, a stop's drain, the listing reach it), until it ends; so does the work
    // of its own companions, joined to that handle directly (one level: a companion leaves its primary
    // when its own runs end, and a handle dropped here must not take them out of reach).
    for (const companion of handle.companions) {
      companion.primary = current;
      current.companions.add(companion);
    }
    handle.companions.clear();
    if (handle.runs.size > 0) {
      current.companions.add(handle);
      handle.primary = current;
    }
  }
}
