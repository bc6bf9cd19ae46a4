// The 4D part of the demo: what 4D's web database methods do, as session hooks.
//   Compiler_Web                  → compilerWeb(): the variables of a brand-new session (the engine's `init`)
//   On Web Connection             → onWebConnection() on every request, and restorePrefs() once the user is known
//   On Web Legacy Close Session   → closeHook(): saves the context to SQLite (the engine's `onClose`)
import type { Clock, CloseReason, LockRef, WebProcess } from '../src/index.js';
import { SORTS, type CartLine, type DemoDb, type SortKey, type User } from './db.js';
import { clockTime, plural, REASON_TEXT } from './views/html.js';

export const PRODUCTS = 'products';
export const PAGE_SIZES = [10, 25, 50, 100] as const;
export const MAX_CART_LINES = 20;

/** Process variables of one session. */
export interface DemoVars {
  /** 4D's www_SessionID: differs from the current session id only in a context Compiler_Web just made. */
  wwwSessionId: string;
  user: User | null;
  pageSize: number;
  sort: SortKey;
  lastSearch: string;
  cart: CartLine[];
  /** The product whose record lock this session holds while its edit form is open. */
  editing: number | null;
  /** A message for the next page, shown once. */
  notice: string;
  requests: number;
  /** When On Web Connection first saw this context. */
  sinceMs: number | null;
  /** When this context last served a request (the close hook compares it with the user's saved state). */
  lastSeenMs: number | null;
  searchedAtMs: number | null;
  /** This session passed the admin token (the admin page labels it). */
  admin: boolean;
}

/** Compiler_Web: every variable exists, empty, before the first line of a new session runs. */
export function compilerWeb(): DemoVars {
  return { wwwSessionId: '', user: null, pageSize: 25, sort: 'name', lastSearch: '', cart: [], editing: null, notice: '', requests: 0, sinceMs: null, lastSeenMs: null, searchedAtMs: null, admin: false };
}

/** Who is in which session (the admin page and lock banners show names, not ids), and why recent ones closed. */
export class SessionDirectory {
  readonly #labels = new Map<string, string>();
  readonly #closed = new Map<string, { reason: CloseReason; atMs: number; login: string | null; saved: boolean; superseded: boolean }>();

  label(sessionId: string, text: string): void {
    this.#labels.set(sessionId, text);
  }

  unlabel(sessionId: string): void {
    this.#labels.delete(sessionId);
  }

  labelOf(sessionId: string): string | undefined {
    return this.#labels.get(sessionId);
  }

  /**
   * Called on every close: the label goes, the reason is kept (bounded) for the browser's next visit, with
   * whether the close hook saved the session (false when it failed, or never ran outside legacy mode).
   */
  closed(sessionId: string, reason: CloseReason, atMs: number, saved: boolean, superseded = false): void {
    this.#closed.set(sessionId, { reason, atMs, login: this.#labels.get(sessionId) ?? null, saved, superseded });
    this.#labels.delete(sessionId);
    if (this.#closed.size > 1000) this.#closed.delete(this.#closed.keys().next().value as string);
  }

  closedInfo(sessionId: string): { reason: CloseReason; atMs: number; login: string | null; saved: boolean; superseded: boolean } | undefined {
    return this.#closed.get(sessionId);
  }
}

/**
 * On Web Connection, run before every request's page. As in 4D's example, comparing www_SessionID with the
 * current session id tells a reused context (variables, selection and locks still there) from a new one.
 * A new one whose browser still sent a dead session's cookie is told what happened to the old session.
 */
export function onWebConnection(proc: WebProcess<DemoVars>, currentSessionId: string, cookieSessionId: string | undefined, directory: SessionDirectory, nowMs: number): void {
  const vars = proc.vars;
  vars.requests++;
  vars.sinceMs ??= nowMs;
  vars.lastSeenMs = nowMs;
  if (vars.wwwSessionId === currentSessionId) return; // context reused: nothing to do, nothing to reload
  vars.wwwSessionId = currentSessionId;
  const previous = cookieSessionId === undefined ? undefined : directory.closedInfo(cookieSessionId);
  if (previous !== undefined) {
    vars.notice = `Your previous session was ${REASON_TEXT[previous.reason] ?? previous.reason} at ${clockTime(previous.atMs)}.`
      + (previous.login === null ? ''
        : previous.superseded ? ' Its cart and search were not kept: a session of yours used more recently saved its own; sign in to pick those up.'
        : previous.saved ? ' Its cart and search were saved: sign in to pick up where you left off.'
          : ' Its cart and search could not be saved.');
  }
}

/**
 * The second half of 4D's On Web Connection example: once the user is known, load the preferences the
 * close hook saved, and rebuild the current selection from the saved search, on the saved page.
 */
export function restorePrefs(proc: WebProcess<DemoVars>, user: User, db: DemoDb, nowMs: number): void {
  const vars = proc.vars;
  vars.user = user;
  const saved = db.loadPrefs(user.id);
  const first = user.name.split(' ')[0] ?? user.name;
  if (saved === undefined) {
    vars.notice = `Welcome, ${first}. Whatever you do here is saved when this session closes, however it closes.`;
    return;
  }
  // Saved rows come from an earlier version or a hand edit as easily as from the hook: keep only valid values.
  vars.pageSize = (PAGE_SIZES as readonly number[]).includes(saved.pageSize) ? saved.pageSize : vars.pageSize;
  vars.sort = Object.hasOwn(SORTS, saved.sort) ? saved.sort : vars.sort;
  vars.lastSearch = saved.lastSearch;
  vars.cart = Array.isArray(saved.cart) ? saved.cart.filter((l) => Number.isSafeInteger(l?.productId) && Number.isSafeInteger(l?.qty) && l.qty > 0).slice(0, MAX_CART_LINES) : [];
  const selection = proc.selections.set(PRODUCTS, db.search(vars.lastSearch, vars.sort));
  selection.position = Math.min(Math.max(0, (saved.lastPage - 1) * vars.pageSize), Math.max(0, selection.keys.length - 1));
  vars.searchedAtMs = nowMs;
  vars.notice = `Welcome back, ${first}. Restored from your session ${REASON_TEXT[saved.savedReason] ?? saved.savedReason} at ${clockTime(saved.savedAtMs)}: `
    + `${describeSearch(saved.lastSearch)}, page ${saved.lastPage}, ${plural(saved.cart.length, 'line')} in your cart.`;
}

/** "product #12": how a record lock reads on every page. */
export function lockLabel(ref: LockRef): string {
  return `${ref.table === PRODUCTS ? 'product' : ref.table} #${ref.key}`;
}

export function describeSearch(text: string): string {
  return text === '' ? 'all products' : `search “${text}”`;
}

/** The page the selection's position is on (1-based). */
export function currentPage(proc: WebProcess<DemoVars>): number {
  const selection = proc.selections.get(PRODUCTS);
  return selection === undefined ? 1 : Math.floor(selection.position / proc.vars.pageSize) + 1;
}

/**
 * On Web Legacy Close Session. The engine calls it once per process of a closing session, for every
 * reason (logout, admin, eviction, timeout, SIGTERM), before anything is torn down: vars, the current
 * selection and the record locks are exactly as the last request left them. It writes the preferences and
 * the log line in one transaction. The engine then clears the selection, releases the locks, resets vars.
 * Returns false when the user's state was not stored (a session of theirs used more recently saved newer state).
 */
export function closeHook(db: DemoDb, clock: Clock): (proc: WebProcess<DemoVars>, reason: CloseReason) => boolean {
  return (proc, reason) => {
    const vars = proc.vars;
    const atMs = clock.now();
    const locks = proc.locks.held().map(lockLabel);
    const lockNote = locks.length === 0 ? '' : ` · lock on ${locks.join(', ')} released`;
    vars.wwwSessionId = ''; // as 4D's example does: this context will not be reused
    if (vars.user === null) {
      db.logClose({ sessionId: proc.sessionId, login: null, reason, atMs, saved: `${vars.admin ? 'admin console' : 'guest'}: nothing to save${lockNote}` });
      return true;
    }
    const lastPage = currentPage(proc);
    const pcs = vars.cart.reduce((n, line) => n + line.qty, 0);
    const saved = `cart ${plural(vars.cart.length, 'line')} (${pcs} pcs) · ${describeSearch(vars.lastSearch)}, page ${lastPage} · ${vars.pageSize}/page by ${vars.sort}${lockNote}`;
    return db.saveSession(
      { sessionId: proc.sessionId, login: vars.user.login, reason, atMs, saved },
      // When this context was last used: a context used earlier (another browser of the user, or a sign-in
      // form posted twice) does not overwrite the state a more recently used one saved.
      { userId: vars.user.id, activeAtMs: vars.lastSeenMs ?? atMs, values: { pageSize: vars.pageSize, sort: vars.sort, lastSearch: vars.lastSearch, lastPage, cart: vars.cart } },
    );
  };
}
