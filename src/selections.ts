import { SessionArgumentError } from './errors.js';

/** A current selection: the record keys of a query result and where the user is in it. */
export interface Selection {
  readonly keys: readonly (string | number)[];
  /** Index of the current record; the application moves it while paging. */
  position: number;
}

/** Current selections of a process, one per table (4D's "current selection"). */
export class Selections {
  // Created on first use: most sessions never query, and an idle session should cost little memory.
  #byTable: Map<string, Selection> | undefined;

  get(table: string): Selection | undefined {
    return this.#byTable?.get(table);
  }

  /** Replaces the table's current selection with a copy of `keys`, positioned on the first record. */
  set(table: string, keys: readonly (string | number)[]): Selection {
    // An array, or a typed array of ids (what some query layers hand back).
    const list = Array.isArray(keys) || (ArrayBuffer.isView(keys) && !(keys instanceof DataView));
    if (typeof table !== 'string' || !list) throw new SessionArgumentError(`selections.set(table: string, keys: array), got ${typeof table}, ${keys === null ? 'null' : typeof keys}`);
    const selection: Selection = { keys: keys.slice(), position: 0 };
    (this.#byTable ??= new Map()).set(table, selection);
    return selection;
  }

  /** Clears one table's selection, or every selection. */
  clear(table?: string): void {
    if (table === undefined) this.#byTable = undefined;
    else this.#byTable?.delete(table);
  }

  /** Tables that have a current selection. */
  tables(): string[] {
    return this.#byTable === undefined ? [] : [...this.#byTable.keys()];
  }
}
