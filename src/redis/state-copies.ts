/**
 * The state Redis holds for one process of a session, as this node last wrote or read it, with the
 * session's fencing counter (`tk`) at that moment. It is exact for as long as that counter has not moved:
 * only an enter or a spawn moves it (on any node, of any version), and only the holder of a process
 * writes its state, after an enter of its own. So an enter that finds the counter where the copy says
 * answers without the state, and the request starts from the copy.
 */
export interface StateCopy {
  readonly pid: string;
  /** The session's fencing counter when the copy was made: the token of this node's request that wrote it. */
  readonly token: string;
  readonly bytes: Buffer;
}

/** What one copy costs beyond its bytes (the entry, the object, the strings), counted against the budget. */
const ENTRY_OVERHEAD_BYTES = 160;

/**
 * This node's copies of the states it wrote last, one per session, within a byte budget: the copy
 * written longest ago goes first. Why: a returning visitor on the node that served it last needs no
 * state from Redis (read-mostly sessions with large state were the costliest requests on the Redis
 * store). A copy that is no longer exact is never used (see StateCopy), so dropping one costs only the
 * transfer it would have saved. Budget 0: no copies.
 */
export class StateCopies {
  readonly #budgetBytes: number;
  readonly #bySession = new Map<string, StateCopy>();
  #usedBytes = 0;

  constructor(budgetBytes: number) {
    this.#budgetBytes = budgetBytes;
  }

  get(sessionId: string): StateCopy | undefined {
    return this.#bySession.get(sessionId);
  }

  /** Keeps `copy` for the session (replacing its earlier one), then drops the oldest ones beyond the budget. */
  set(sessionId: string, copy: StateCopy): void {
    this.drop(sessionId);
    const cost = copy.bytes.length + ENTRY_OVERHEAD_BYTES;
    if (cost > this.#budgetBytes) return;
    this.#bySession.set(sessionId, copy);
    this.#usedBytes += cost;
    for (const [oldest, old] of this.#bySession) {
      if (this.#usedBytes <= this.#budgetBytes) break;
      this.#bySession.delete(oldest);
      this.#usedBytes -= old.bytes.length + ENTRY_OVERHEAD_BYTES;
    }
  }

  /** Forgets the session's copy; with `token`, only the copy made under it (a later one stays). */
  drop(sessionId: string, token?: string): void {
    const copy = this.#bySession.get(sessionId);
    if (copy === undefined || (token !== undefined && copy.token !== token)) return;
    this.#bySession.delete(sessionId);
    this.#usedBytes -= copy.bytes.length + ENTRY_OVERHEAD_BYTES;
  }

  /** The sessions that have a copy. */
  sessionIds(): IterableIterator<string> {
    return this.#bySession.keys();
  }

  get size(): number {
    return this.#bySession.size;
  }

  get usedBytes(): number {
    return this.#usedBytes;
  }
}
