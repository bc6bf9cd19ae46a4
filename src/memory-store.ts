import type { SessionVars } from './process.js';
import type { Session } from './session.js';

/**
 * Live sessions of one engine, in memory: an id map and an intrusive doubly linked list of the idle
 * ones, least recently active first. Every operation is O(1): eviction takes the head, a request takes
 * its session out of the list, the end of a request appends it at the tail. Because every idle session
 * has the same timeout, the head also holds the earliest inactivity deadline, so one timer suffices.
 */
export class MemoryStore<Vars extends SessionVars> {
  readonly #byId = new Map<string, Session<Vars>>();
  #idleHead: Session<Vars> | undefined;
  #idleTail: Session<Vars> | undefined;
  #idleCount = 0;

  get(id: string): Session<Vars> | undefined {
    return this.#byId.get(id);
  }

  /** Adds a new session; it starts busy (its first request is running). */
  add(session: Session<Vars>): void {
    this.#byId.set(session.id, session);
  }

  /** Gives a session a new id (session fixation defence); the old id no longer finds it. */
  rename(session: Session<Vars>, newId: string): void {
    this.#byId.delete(session.id);
    session.id = newId;
    this.#byId.set(newId, session);
  }

  /** Removes a session for good (it is closing): its id is dead from now on. */
  delete(session: Session<Vars>): void {
    this.markBusy(session);
    this.#byId.delete(session.id);
  }

  /** The session has work again: out of the idle list (so it can be neither evicted nor timed out). */
  markBusy(session: Session<Vars>): void {
    if (!session.isIdle) return;
    const { idlePrev, idleNext } = session;
    if (idlePrev === undefined) this.#idleHead = idleNext;
    else idlePrev.idleNext = idleNext;
    if (idleNext === undefined) this.#idleTail = idlePrev;
    else idleNext.idlePrev = idlePrev;
    session.idlePrev = session.idleNext = undefined;
    session.isIdle = false;
    this.#idleCount--;
  }

  /** The session's work is over: it becomes the most recently active idle session. */
  markIdle(session: Session<Vars>): void {
    if (session.isIdle) return;
    session.idlePrev = this.#idleTail;
    session.idleNext = undefined;
    if (this.#idleTail === undefined) this.#idleHead = session;
    else this.#idleTail.idleNext = session;
    this.#idleTail = session;
    session.isIdle = true;
    this.#idleCount++;
  }

  /** The least recently active idle session: the one to evict, and the next to time out. */
  oldestIdle(): Session<Vars> | undefined {
    return this.#idleHead;
  }

  get size(): number {
    return this.#byId.size;
  }

  get idleCount(): number {
    return this.#idleCount;
  }
  /**
   * How many of the least recently active idle sessions must close to make room for one more, or the
   * limit that no eviction can lift. Nothing is closed unless it makes room: with the cap lowered below
   * the busy sessions, closing the idle ones would destroy them and still refuse the newcomer.
   */
  victimsMakingRoom(cap: number, liveProcesses: number, maxConcurrentProcesses: number): number | 'sessionLimit' | 'processLimit' {
    const sessionsToFree = Math.max(0, this.size - cap + 1);
    if (sessionsToFree > this.idleCount) return 'sessionLimit';
    let processesToFree = liveProcesses - maxConcurrentProcesses + 1;
    let victims = 0;
    // Walks only as far as the victims it will close (each frees its processes), or to the list's end.
    for (let idle = this.oldestIdle(); idle !== undefined && (victims < sessionsToFree || processesToFree > 0); idle = idle.idleNext) {
      victims++;
      processesToFree -= idle.processes.length;
    }
    return processesToFree > 0 ? 'processLimit' : victims;
  }

  values(): IterableIterator<Session<Vars>> {
    return this.#byId.values();
  }
}
