// The app's routes: sign in (restore), browse (current selection), edit (record lock), cart, sign out
// (WEB LEGACY CLOSE SESSION).
import type { Product, User } from '../db.js';
import { SORTS, type SortKey } from '../db.js';
import { HttpError, integerField, readPostForm, redirect, sendHtml, type Ctx, type Router } from '../http.js';
import { CATEGORIES } from '../seed.js';
import { compilerWeb, lockLabel, MAX_CART_LINES, PAGE_SIZES, PRODUCTS, restorePrefs } from '../session.js';
import { loginPage, productPage, productsPage, type CartView, type SessionPanel } from '../views/app.js';
import { shortId } from '../views/html.js';

export function appRoutes(router: Router): void {
  router
    .add('GET', '/', (ctx) => redirect(ctx.res, ctx.proc.vars.user === null ? '/login' : '/products'))
    .add('GET', '/login', showLogin)
    .add('POST', '/login', login)
    .add('POST', '/logout', logout)
    .add('GET', '/products', products)
    .add('GET', '/products/:id', product)
    .add('POST', '/products/:id', saveProduct)
    .add('POST', '/products/:id/release', release)
    .add('POST', '/cart', cart);
}

function showLogin(ctx: Ctx, status = 200, error = ''): void {
  if (ctx.proc.vars.user !== null) return redirect(ctx.res, '/products');
  const users = ctx.app.db.users().map((user) => ({ user, saved: ctx.app.db.loadPrefs(user.id) }));
  sendHtml(ctx.res, status, loginPage({ users, notice: takeNotice(ctx), error, signedOut: ctx.url.searchParams.get('signedOut') }));
}

async function login(ctx: Ctx): Promise<void> {
  const form = await readPostForm(ctx.req);
  if (ctx.proc.vars.user !== null) return redirect(ctx.res, '/products');
  const user = ctx.app.db.userByLogin(form.get('user') ?? '');
  if (user === undefined) return showLogin(ctx, 400, `There is no user “${(form.get('user') ?? '').slice(0, 40)}”. Pick one of the users below.`);
  restorePrefs(ctx.proc, user, ctx.app.db, ctx.app.clock.now());
  // Against session fixation: the signed-in context moves to a fresh id (this answer sends its cookie),
  // and an id known before sign-in names nothing any more. www_SessionID follows, as 4D's example stores it.
  const newId = await ctx.app.engine.regenerate(ctx.proc.sessionId);
  if (newId !== null) {
    ctx.proc.vars.wwwSessionId = newId;
    ctx.app.directory.label(newId, user.name);
  }
  redirect(ctx.res, '/products');
}

async function logout(ctx: Ctx): Promise<void> {
  // WEB LEGACY CLOSE SESSION from the session's own request: the hook saves, the locks go, and this request
  // goes on with reset variables (do not read proc.vars after this line); the answer clears the cookie.
  const id = ctx.proc.sessionId;
  if (await ctx.app.engine.closeSession(id)) {
    // The close is over (hook run, 'close' emitted): say it saved only if it did.
    return redirect(ctx.res, ctx.app.directory.closedInfo(id)?.saved === false ? '/login?signedOut=unsaved' : '/login?signedOut=closed');
  }
  // Not legacy mode: nothing closes and no hook runs, so sign out by hand.
  await releaseEditLock(ctx);
  ctx.proc.selections.clear();
  ctx.proc.vars = { ...compilerWeb(), wwwSessionId: ctx.proc.vars.wwwSessionId };
  redirect(ctx.res, '/login?signedOut=kept');
}

async function products(ctx: Ctx): Promise<void> {
  const user = signedIn(ctx);
  if (user === undefined) return;
  await releaseEditLock(ctx);
  const { vars } = ctx.proc;
  const params = ctx.url.searchParams;
  if (params.has('q')) {
    // The search form always sends q: a new query, whose result becomes the current selection.
    const sort = params.get('sort') ?? vars.sort;
    if (!Object.hasOwn(SORTS, sort)) throw new HttpError(400, `Sort must be one of: ${Object.keys(SORTS).join(', ')}.`);
    const size = integerField(params.get('size') ?? String(vars.pageSize), 'Page size', 1, 1000);
    if (!(PAGE_SIZES as readonly number[]).includes(size)) throw new HttpError(400, `Page size must be one of ${PAGE_SIZES.join(', ')}.`);
    const text = (params.get('q') ?? '').trim();
    if (text.length > 100) throw new HttpError(400, 'A search is at most 100 characters.');
    Object.assign(vars, { lastSearch: text, sort: sort as SortKey, pageSize: size });
    runSearch(ctx);
  }
  const selection = ctx.proc.selections.get(PRODUCTS) ?? runSearch(ctx);
  const total = selection.keys.length;
  const count = Math.max(1, Math.ceil(total / vars.pageSize));
  if (params.has('page')) selection.position = (integerField(params.get('page'), 'Page', 1, 1_000_000) - 1) * vars.pageSize;
  const pageNumber = Math.min(count, Math.floor(selection.position / vars.pageSize) + 1);
  const start = (pageNumber - 1) * vars.pageSize;
  selection.position = start;
  // Paging reads keys from the session's selection: the query is not run again.
  const rows = ctx.app.db.productsByIds(selection.keys.slice(start, start + vars.pageSize) as number[]);
  const lockedBy = await Promise.all(rows.map(async (p) => {
    const holder = await ctx.proc.locks.lockedBy(PRODUCTS, p.id);
    return holder === null || holder.sessionId === ctx.proc.sessionId ? null : holderLabel(ctx, holder.sessionId);
  }));
  sendHtml(ctx.res, 200, productsPage({
    user, notice: takeNotice(ctx), panel: sessionPanel(ctx), cart: cartView(ctx),
    search: { q: vars.lastSearch, sort: vars.sort, pageSize: vars.pageSize },
    rows: rows.map((product, i) => ({ product, lockedBy: lockedBy[i] ?? null })),
    page: { number: pageNumber, count, total, first: Math.min(total, start + 1), last: Math.min(total, start + vars.pageSize) },
  }));
}

async function product(ctx: Ctx): Promise<void> {
  const user = signedIn(ctx);
  if (user === undefined) return;
  const p = productParam(ctx);
  await releaseEditLock(ctx, p.id); // opening another record is leaving this one
  // LOAD RECORD in read/write mode: the lock is taken, or the record is shown read-only (4D's Locked).
  if (await ctx.proc.locks.tryLock(PRODUCTS, p.id)) ctx.proc.vars.editing = p.id;
  const values = { name: p.name, category: p.category, price: (p.priceCents / 100).toFixed(2), stock: String(p.stock) };
  await renderProduct(ctx, user, p, values, [], 200);
}

async function saveProduct(ctx: Ctx): Promise<void> {
  const user = signedIn(ctx);
  if (user === undefined) return;
  const p = productParam(ctx);
  const form = await readPostForm(ctx.req);
  const values = { name: (form.get('name') ?? '').trim(), category: form.get('category') ?? '', price: (form.get('price') ?? '').trim(), stock: (form.get('stock') ?? '').trim() };
  const { errors, fields } = productFields(values);
  if (!ctx.proc.locks.held().some((l) => l.table === PRODUCTS && l.key === p.id)) {
    // The same form posted again (a double click): the first post saved exactly this and released the lock.
    if (fields !== undefined && p.updatedBy === user.login && p.name === fields.name && p.category === fields.category && p.priceCents === fields.priceCents && p.stock === fields.stock) {
      ctx.proc.vars.notice = `Saved “${p.name}”. Its record lock is released.`;
      return redirect(ctx.res, '/products');
    }
    throw new HttpError(409, 'You do not hold the lock on this record any more: open it again to edit it.');
  }
  if (fields === undefined) return renderProduct(ctx, user, p, values, errors, 400);
  ctx.app.db.updateProduct(p.id, fields, user.login, ctx.app.clock.now());
  await releaseEditLock(ctx);
  ctx.proc.vars.notice = `Saved “${fields.name}”. Its record lock is released.`;
  redirect(ctx.res, '/products');
}

/** The product form's values checked: the fields to store, or what is wrong with them. */
function productFields(values: { name: string; category: string; price: string; stock: string }): { errors: string[]; fields?: { name: string; category: string; priceCents: number; stock: number } } {
  const errors: string[] = [];
  if (values.name === '' || values.name.length > 80) errors.push('Name is required, at most 80 characters.');
  if (!CATEGORIES.includes(values.category)) errors.push(`Category must be one of: ${CATEGORIES.join(', ')}.`);
  if (!/^\d{1,6}(\.\d{1,2})?$/.test(values.price)) errors.push('Price must be an amount such as 12 or 12.50 (at most 999999.99).');
  if (!/^\d{1,6}$/.test(values.stock)) errors.push('Stock must be a whole number from 0 to 999999.');
  if (errors.length > 0) return { errors };
  return { errors, fields: { name: values.name, category: values.category, priceCents: Math.round(Number(values.price) * 100), stock: Number(values.stock) } };
}

async function release(ctx: Ctx): Promise<void> {
  if (signedIn(ctx) === undefined) return;
  await readPostForm(ctx.req);
  await releaseEditLock(ctx);
  redirect(ctx.res, '/products');
}

async function cart(ctx: Ctx): Promise<void> {
  if (signedIn(ctx) === undefined) return;
  const form = await readPostForm(ctx.req);
  const id = integerField(form.get('id'), 'Product id', 1, Number.MAX_SAFE_INTEGER);
  const { vars } = ctx.proc;
  const line = vars.cart.find((l) => l.productId === id);
  const action = form.get('action');
  if (action === 'add') {
    if (ctx.app.db.product(id) === undefined) throw new HttpError(404, `There is no product #${id}.`);
    if (line !== undefined) line.qty = Math.min(99, line.qty + 1);
    else if (vars.cart.length >= MAX_CART_LINES) throw new HttpError(400, `A cart holds at most ${MAX_CART_LINES} lines.`);
    else vars.cart.push({ productId: id, qty: 1 });
  } else if (action === 'remove') {
    vars.cart = vars.cart.filter((l) => l.productId !== id);
  } else {
    throw new HttpError(400, 'Action must be “add” or “remove”.');
  }
  redirect(ctx.res, '/products');
}

// ---- helpers -------------------------------------------------------------------------------------

async function renderProduct(ctx: Ctx, user: User, p: Product, values: { name: string; category: string; price: string; stock: string }, errors: string[], status: number): Promise<void> {
  const holder = await ctx.proc.locks.lockedBy(PRODUCTS, p.id);
  const mine = holder !== null && holder.sessionId === ctx.proc.sessionId;
  const lock = holder === null ? null : { mine, label: mine ? 'you' : holderLabel(ctx, holder.sessionId), sessionId: holder.sessionId, sinceMs: holder.sinceMs };
  const keys = ctx.proc.selections.get(PRODUCTS)?.keys ?? [];
  const index = keys.indexOf(p.id);
  const nav = index < 0 ? null : { index, total: keys.length, prevId: (keys[index - 1] as number | undefined) ?? null, nextId: (keys[index + 1] as number | undefined) ?? null };
  sendHtml(ctx.res, status, productPage({ user, notice: takeNotice(ctx), panel: sessionPanel(ctx), cart: cartView(ctx), product: p, lock, errors, values, nav }));
}

/** The signed-in user, or a redirect to the sign-in page (and undefined). */
function signedIn(ctx: Ctx): User | undefined {
  const user = ctx.proc.vars.user;
  if (user !== null) return user;
  redirect(ctx.res, '/login');
  return undefined;
}

function productParam(ctx: Ctx): Product {
  const text = ctx.params.id ?? '';
  const p = /^\d{1,15}$/.test(text) ? ctx.app.db.product(Number(text)) : undefined;
  if (p === undefined) throw new HttpError(404, `There is no product “${text.slice(0, 20)}”.`);
  return p;
}

/** Leaving the edit form (any other page) gives the record back. */
async function releaseEditLock(ctx: Ctx, keep?: number): Promise<void> {
  const editing = ctx.proc.vars.editing;
  if (editing === null || editing === keep) return;
  await ctx.proc.locks.unlock(PRODUCTS, editing);
  ctx.proc.vars.editing = null;
}

function runSearch(ctx: Ctx): NonNullable<ReturnType<typeof ctx.proc.selections.get>> {
  ctx.proc.vars.searchedAtMs = ctx.app.clock.now();
  return ctx.proc.selections.set(PRODUCTS, ctx.app.db.search(ctx.proc.vars.lastSearch, ctx.proc.vars.sort));
}

function holderLabel(ctx: Ctx, sessionId: string): string {
  return ctx.app.directory.labelOf(sessionId) ?? `session ${shortId(sessionId)}`;
}

function takeNotice(ctx: Ctx): string {
  const notice = ctx.proc.vars.notice;
  ctx.proc.vars.notice = '';
  return notice;
}

function cartView(ctx: Ctx): CartView[] {
  const { cart } = ctx.proc.vars;
  const byId = new Map(ctx.app.db.productsByIds(cart.map((l) => l.productId)).map((p) => [p.id, p]));
  return cart.flatMap((l) => { const product = byId.get(l.productId); return product === undefined ? [] : [{ product, qty: l.qty }]; });
}

function sessionPanel(ctx: Ctx): SessionPanel {
  const { proc, app } = ctx;
  const { vars } = proc;
  const selection = proc.selections.get(PRODUCTS);
  return {
    sessionId: proc.sessionId,
    mode: app.engine.getOption('mode'),
    sinceMs: vars.sinceMs,
    requests: vars.requests,
    expiresAtMs: app.engine.sessionExpiration(proc.sessionId)?.getTime() ?? null,
    timeoutMs: app.engine.getOption('inactiveProcessTimeoutMs'),
    maxSessions: app.engine.getOption('maxSessions'),
    vars: [
      ['user', vars.user?.login ?? '—'],
      ['pageSize', String(vars.pageSize)],
      ['sort', vars.sort],
      ['lastSearch', vars.lastSearch === '' ? '(all)' : `“${vars.lastSearch}”`],
      ['cart', `${vars.cart.length} line(s)`],
    ],
    selection: selection === undefined ? null : { size: selection.keys.length, position: selection.position, queriedAtMs: vars.searchedAtMs },
    locks: proc.locks.held().map(lockLabel),
  };
}
