/**
 * The sessions regenerated lately (on any node), old id → new id. A reply to a script that ran just
 * before a rename names the old id, and may be read after this node heard of the rename: the work it
 * starts must go on under the new id. Only the latest few are kept: such a reply lands within a round
 * trip of the rename.
 */
export class RecentRenames {
  static readonly KEPT = 1_024;
  readonly #newIdByOld = new Map<string, string>();

  add(oldId: string, newId: string): void {
    this.#newIdByOld.delete(oldId);
    this.#newIdByOld.set(oldId, newId);
    if (this.#newIdByOld.size > RecentRenames.KEPT) {
      const oldest = this.#newIdByOld.keys().next();
      if (oldest.done !== true) this.#newIdByOld.delete(oldest.value);
    }
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
}
