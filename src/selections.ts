import { SessionArgumentError } from './errors.js';

/** A current selection: the record keys of a query result and where the user is in it. */
export interface Selection {
  readonly keys: readonly (string | number)[];
  /** Index of the current record; the application moves it while paging. */
  position: number;
}

/** @internal A saved selection put back as it was saved (the Redis store): not checked again. */
export let restoreSelection: (selections: Selections, table: string, keys: readonly (string | number)[], position: number) => void;

/** Current selections of a process, one per table (4D's "current selection"). */
export class Selections {
  // Created on first use: most sessions never query, and an idle session should cost little memory.
  #byTable: Map<string, Selection> | undefined;

  get(table: string): Selection | undefined {
    if (typeof table !== 'string') throw new SessionArgumentError(`selections.get(table: string), got ${typeof table}`);
    return this.#byTable?.get(table);
  }

  /** Replaces the table's current selection with a copy of `keys`, positioned on the first record. */
  set(table: string, keys: readonly (string | number)[]): Selection {
    // An array, or a typed array of number ids (what some query layers hand back); not of bigints.
    const list = Array.isArray(keys) || (ArrayBuffer.isView(keys) && !(keys instanceof DataView) && !(keys instanceof BigInt64Array) && !(keys instanceof BigUint64Array));
    if (typeof table !== 'string' || !list) throw new SessionArgumentError(`selections.set(table: string, keys: array), got ${typeof table}, ${keys === null ? 'null' : typeof keys}`);
    // Keys are record ids: strings or numbers. Anything else would be kept here and then, on the Redis
    // store, make the whole state unstorable at the release (the request's vars lost with it).
    if (Array.isArray(keys)) {
      for (let i = 0; i < keys.length; i++) {
        const key: unknown = keys[i];
        if (typeof key !== 'string' && typeof key !== 'number') throw new SessionArgumentError(`selections.set(table, keys): keys must be strings or numbers, got ${key === null ? 'null' : typeof key} at index ${i}`);
      }
    }
    return this.#put(table, keys);
  }

  #put(table: string, keys: readonly (string | number)[]): Selection {
    const selection: Selection = { keys: keys.slice(), position: 0 };
    (this.#byTable ??= new Map()).set(table, selection);
    return selection;
  }

  /** Clears one table's selection, or every selection. */
  clear(table?: string): void {
    if (table !== undefined && typeof table !== 'string') throw new SessionArgumentError(`selections.clear(table?: string), got ${table === null ? 'null' : typeof table}`);
    if (table === undefined) this.#byTable = undefined;
    else this.#byTable?.delete(table);
  }

  static {
    restoreSelection = (selections, table, keys, position) => {
      selections.#put(table, keys).position = position;
    };
  }

  /** Tables that have a current selection. */
  tables(): string[] {
    return this.#byTable === undefined ? [] : [...this.#byTable.keys()];
  }
}
