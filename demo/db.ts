// The demo's SQLite database: schema, first-start seed, and every query the app runs. better-sqlite3 is
// synchronous, which suits a close hook well: a save is one transaction that cannot interleave with others.
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { SEED_USERS, seedProducts } from './seed.js';

export const SORTS = { name: 'Name', sku: 'SKU', 'price-asc': 'Price ↑', 'price-desc': 'Price ↓', stock: 'Stock' } as const;
export type SortKey = keyof typeof SORTS;
const ORDER_BY: Readonly<Record<SortKey, string>> = {
  name: 'name COLLATE NOCASE, id', sku: 'sku', 'price-asc': 'price_cents, id', 'price-desc': 'price_cents DESC, id', stock: 'stock, id',
};

export interface User { readonly id: number; readonly login: string; readonly name: string; readonly email: string; readonly team: string }
export interface Product {
  readonly id: number; readonly sku: string; readonly name: string; readonly category: string;
  readonly priceCents: number; readonly stock: number; readonly updatedAtMs: number | null; readonly updatedBy: string | null;
}
export interface CartLine { productId: number; qty: number }

/** What On Web Legacy Close Session writes for a user, and On Web Connection reads back at the next login. */
export interface SavedPrefs {
  readonly pageSize: number; readonly sort: SortKey; readonly lastSearch: string; readonly lastPage: number;
  readonly cart: CartLine[]; readonly savedAtMs: number; readonly savedReason: string;
}

export interface CloseRecord {
  readonly sessionId: string; readonly login: string | null; readonly reason: string; readonly atMs: number;
  /** One line saying what the hook saved (shown on the admin page). */
  readonly saved: string;
}

const SCHEMA_VERSION = 2;
const CLOSE_LOG_KEEP = 1000;
const PRODUCT_COLUMNS = 'id, sku, name, category, price_cents AS priceCents, stock, updated_at AS updatedAtMs, updated_by AS updatedBy';

export class DemoDb {
  readonly #db: Database.Database;
  /** Searches run since start: paging must not add to it (it reads the session's current selection). */
  searches = 0;

  constructor(path: string, productCount = 3000) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.#db = new Database(path);
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('foreign_keys = ON');
    const version = this.#db.pragma('user_version', { simple: true });
    if (version === 1) this.#migrateFrom1();
    else if (version !== SCHEMA_VERSION) this.#createAndSeed(productCount);
  }

  /** Version 2 records when the saving session was last used (prefs.active_at). */
  #migrateFrom1(): void {
    this.#db.transaction(() => {
      this.#db.exec('ALTER TABLE prefs ADD COLUMN active_at INTEGER');
      this.#db.pragma(`user_version = ${SCHEMA_VERSION}`);
    })();
  }

  #createAndSeed(productCount: number): void {
    this.#db.transaction(() => {
      this.#db.exec(`
        CREATE TABLE users (id INTEGER PRIMARY KEY, login TEXT NOT NULL UNIQUE, name TEXT NOT NULL, email TEXT NOT NULL, team TEXT NOT NULL);
        CREATE TABLE products (id INTEGER PRIMARY KEY, sku TEXT NOT NULL UNIQUE, name TEXT NOT NULL, category TEXT NOT NULL,
          price_cents INTEGER NOT NULL, stock INTEGER NOT NULL, updated_at INTEGER, updated_by TEXT);
        CREATE TABLE prefs (user_id INTEGER PRIMARY KEY REFERENCES users(id), page_size INTEGER NOT NULL, sort TEXT NOT NULL,
          last_search TEXT NOT NULL, last_page INTEGER NOT NULL, cart TEXT NOT NULL, saved_at INTEGER NOT NULL,
          saved_reason TEXT NOT NULL, session_id TEXT NOT NULL, active_at INTEGER);
        CREATE TABLE close_log (id INTEGER PRIMARY KEY, session_id TEXT NOT NULL, login TEXT, reason TEXT NOT NULL,
          at INTEGER NOT NULL, saved TEXT NOT NULL);`);
      const user = this.#db.prepare('INSERT INTO users (login, name, email, team) VALUES (?, ?, ?, ?)');
      for (const u of SEED_USERS) user.run(u.login, u.name, u.email, u.team);
      const product = this.#db.prepare('INSERT INTO products (sku, name, category, price_cents, stock) VALUES (?, ?, ?, ?, ?)');
      for (const p of seedProducts(productCount)) product.run(p.sku, p.name, p.category, p.priceCents, p.stock);
      this.#db.pragma(`user_version = ${SCHEMA_VERSION}`);
    })();
  }

  users(): User[] {
    return this.#db.prepare('SELECT id, login, name, email, team FROM users ORDER BY id').all() as User[];
  }

  userByLogin(login: string): User | undefined {
    return this.#db.prepare('SELECT id, login, name, email, team FROM users WHERE login = ?').get(login) as User | undefined;
  }

  /** 4D's QUERY: the keys of every matching product, in `sort` order. */
  search(text: string, sort: SortKey): number[] {
    this.searches++;
    const like = `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
    return this.#db
      .prepare(`SELECT id FROM products WHERE name LIKE @like ESCAPE '\\' OR sku LIKE @like ESCAPE '\\' OR category LIKE @like ESCAPE '\\' ORDER BY ${ORDER_BY[sort]}`)
      .pluck()
      .all({ like }) as number[];
  }

  /** The rows of `ids`, in the order given (a page of a selection). */
  productsByIds(ids: readonly number[]): Product[] {
    if (ids.length === 0) return [];
    const rows = this.#db.prepare(`SELECT ${PRODUCT_COLUMNS} FROM products WHERE id IN (${ids.map(() => '?').join(',')})`).all(...ids) as Product[];
    const byId = new Map(rows.map((r) => [r.id, r]));
    return ids.flatMap((id) => byId.get(id) ?? []);
  }

  product(id: number): Product | undefined {
    return this.#db.prepare(`SELECT ${PRODUCT_COLUMNS} FROM products WHERE id = ?`).get(id) as Product | undefined;
  }

  updateProduct(id: number, fields: { name: string; category: string; priceCents: number; stock: number }, by: string, atMs: number): void {
    this.#db.prepare('UPDATE products SET name = ?, category = ?, price_cents = ?, stock = ?, updated_at = ?, updated_by = ? WHERE id = ?')
      .run(fields.name, fields.category, fields.priceCents, fields.stock, atMs, by, id);
  }

  loadPrefs(userId: number): SavedPrefs | undefined {
    const row = this.#db.prepare('SELECT page_size, sort, last_search, last_page, cart, saved_at, saved_reason FROM prefs WHERE user_id = ?').get(userId) as
      | { page_size: number; sort: SortKey; last_search: string; last_page: number; cart: string; saved_at: number; saved_reason: string }
      | undefined;
    if (row === undefined) return undefined;
    return {
      pageSize: row.page_size, sort: row.sort, lastSearch: row.last_search, lastPage: row.last_page,
      cart: JSON.parse(row.cart) as CartLine[], savedAtMs: row.saved_at, savedReason: row.saved_reason,
    };
  }

  /**
   * The close hook's write: the user's preferences (when someone was signed in) and the log line, in one
   * transaction, so a crash never leaves one without the other. The log keeps its last 1000 lines.
   */
  saveSession(record: CloseRecord, prefs: { userId: number; activeAtMs: number; values: Omit<SavedPrefs, 'savedAtMs' | 'savedReason'> } | undefined): boolean {
    return this.#db.transaction(() => {
      let line = record.saved;
      let stored = true;
      if (prefs !== undefined) {
        const v = prefs.values;
        // A state saved by a session of this user used more recently than this one is newer: it stays.
        const { changes } = this.#db.prepare(`INSERT INTO prefs (user_id, page_size, sort, last_search, last_page, cart, saved_at, saved_reason, session_id, active_at)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET page_size = excluded.page_size, sort = excluded.sort,
          last_search = excluded.last_search, last_page = excluded.last_page, cart = excluded.cart, saved_at = excluded.saved_at,
          saved_reason = excluded.saved_reason, session_id = excluded.session_id, active_at = excluded.active_at
          WHERE prefs.active_at IS NULL OR excluded.active_at >= prefs.active_at`)
          .run(prefs.userId, v.pageSize, v.sort, v.lastSearch, v.lastPage, JSON.stringify(v.cart), record.atMs, record.reason, record.sessionId, prefs.activeAtMs);
        if (changes === 0) {
          stored = false;
          line += ' · not stored: a session of this user used more recently saved newer state';
        }
      }
      this.logClose({ ...record, saved: line });
      return stored;
    })();
  }

  logClose(record: CloseRecord): void {
    const { lastInsertRowid } = this.#db.prepare('INSERT INTO close_log (session_id, login, reason, at, saved) VALUES (?, ?, ?, ?, ?)')
      .run(record.sessionId, record.login, record.reason, record.atMs, record.saved);
    this.#db.prepare('DELETE FROM close_log WHERE id <= ?').run(Number(lastInsertRowid) - CLOSE_LOG_KEEP);
  }

  recentCloses(limit: number): CloseRecord[] {
    return this.#db.prepare('SELECT session_id AS sessionId, login, reason, at AS atMs, saved FROM close_log ORDER BY id DESC LIMIT ?')
      .all(limit) as CloseRecord[];
  }

  close(): void {
    this.#db.close();
  }
}
