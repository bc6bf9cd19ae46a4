// The app's pages: sign-in, the product list (a page of the current selection), one product (editable
// when this session holds its record lock, read-only otherwise), and the "this session" panel.
import type { Product, SavedPrefs, User } from '../db.js';
import { SORTS } from '../db.js';
import { CATEGORIES } from '../seed.js';
import { PAGE_SIZES } from '../session.js';
import { banner, layout } from './layout.js';
import { clockTime, dateTime, duration, html, money, plural, shortId, type SafeHtml } from './html.js';

export interface SessionPanel {
  readonly sessionId: string;
  readonly mode: string;
  readonly sinceMs: number | null;
  readonly requests: number;
  readonly expiresAtMs: number | null;
  readonly timeoutMs: number;
  readonly maxSessions: number;
  readonly vars: readonly [string, string][];
  readonly selection: { readonly size: number; readonly position: number; readonly queriedAtMs: number | null } | null;
  readonly locks: readonly string[];
}

export interface CartView { readonly product: Product; readonly qty: number }

export function loginPage(model: { users: { user: User; saved: SavedPrefs | undefined }[]; notice: string; error: string; signedOut: string | null }): SafeHtml {
  const cards = model.users.map(({ user, saved }) => html`<form method="post" action="/login" class="user-card">
    <input type="hidden" name="user" value="${user.login}">
    <button data-testid="login-${user.login}"><span class="avatar big">${user.name.slice(0, 1)}</span>
      <span class="who"><strong>${user.name}</strong><small>${user.team} · ${user.login}</small>
      <small class="saved">${saved === undefined ? 'No saved session yet' : html`Saved ${dateTime(saved.savedAtMs)} (${saved.savedReason}) · ${plural(saved.cart.length, 'cart line')}`}</small></span>
    </button></form>`);
  const signedOut = model.signedOut === 'closed'
    ? banner('ok', 'You signed out: WEB LEGACY CLOSE SESSION closed your session, and its close hook saved your cart and search.')
    : model.signedOut === 'unsaved'
      ? banner('warn', 'You signed out: WEB LEGACY CLOSE SESSION closed your session, but its close hook failed: your cart and search could not be saved.')
    : model.signedOut === 'kept'
      ? banner('warn', 'You signed out, but the engine is not in legacy mode: the session was not closed and nothing was saved (onClose runs only in legacy mode).')
      : '';
  return layout({
    title: 'Sign in', section: 'app',
    body: html`<div class="login-grid">
    <section class="card">
      <h1>Sign in</h1>
      <p class="muted">This is a demo: there are no passwords. Pick a user.</p>
      ${signedOut}${model.notice === '' ? '' : banner('info', model.notice)}${model.error === '' ? '' : banner('error', model.error, 'error')}
      <div class="user-grid">${cards}</div>
    </section>
    <aside class="card explain">
      <h2>What this demo shows</h2>
      <ol class="steps">
        <li><b>Compiler_Web</b> — a new browser gets a session whose variables start empty.</li>
        <li><b>On Web Connection</b> — signing in loads what your last session saved: page size, sort, last search and page, cart.</li>
        <li><b>A live context</b> — your search is kept as the session's <em>current selection</em>; paging never re-queries. Opening a product takes its <em>record lock</em>.</li>
        <li><b>On Web Legacy Close Session</b> — when the session closes (sign out, admin, eviction, timeout, server stop) its hook saves everything, then its locks are released.</li>
      </ol>
      <p class="muted">Open a second browser (or a private window) as another user to see record locks, and <a href="/admin">the admin console</a> to watch and close sessions.</p>
    </aside></div>`,
  });
}

export function productsPage(model: {
  user: User; notice: string; panel: SessionPanel; cart: CartView[];
  search: { q: string; sort: string; pageSize: number };
  rows: { product: Product; lockedBy: string | null }[];
  page: { number: number; count: number; first: number; last: number; total: number };
}): SafeHtml {
  const { page } = model;
  const rows = model.rows.map(({ product: p, lockedBy }) => html`<tr>
    <td class="mono">${p.sku}</td>
    <td><a href="/products/${p.id}">${p.name}</a>${lockedBy === null ? '' : html` <span class="pill locked" title="record locked by ${lockedBy}" data-testid="locked">locked · ${lockedBy}</span>`}</td>
    <td>${p.category}</td><td class="num">${money(p.priceCents)}</td><td class="num">${p.stock}</td>
    <td class="act"><form method="post" action="/cart"><input type="hidden" name="action" value="add"><input type="hidden" name="id" value="${p.id}">
      <button class="btn small ghost" title="Add to cart">+ Cart</button></form></td></tr>`);
  const option = (value: string | number, label: string, current: string | number): SafeHtml =>
    html`<option value="${value}"${value === current ? html` selected` : ''}>${label}</option>`;
  const pager = html`<nav class="pager" data-testid="pager">
    ${page.number > 1 ? html`<a class="btn ghost small" href="/products?page=${page.number - 1}" data-testid="prev">← Previous</a>` : html`<span class="btn ghost small disabled">← Previous</span>`}
    <span>Page <b data-testid="page">${page.number}</b> of ${page.count}</span>
    ${page.number < page.count ? html`<a class="btn ghost small" href="/products?page=${page.number + 1}" data-testid="next">Next →</a>` : html`<span class="btn ghost small disabled">Next →</span>`}
  </nav>`;
  return layout({
    title: 'Products', section: 'app', user: model.user, cartLines: model.cart.length,
    body: html`${model.notice === '' ? '' : banner('info', model.notice)}
    <div class="grid">
      <section class="card main-card">
        <form class="search" method="get" action="/products">
          <input type="search" name="q" value="${model.search.q}" placeholder="Search name, SKU or category" maxlength="100" aria-label="Search">
          <select name="sort" aria-label="Sort">${Object.entries(SORTS).map(([k, label]) => option(k, `Sort: ${label}`, model.search.sort))}</select>
          <select name="size" aria-label="Page size">${PAGE_SIZES.map((n) => option(n, `${n} per page`, model.search.pageSize))}</select>
          <button class="btn">Search</button>
        </form>
        <p class="selection-line" data-testid="selection" data-total="${page.total}">
          ${page.total === 0 ? 'No product matches.' : html`Records <b>${page.first}–${page.last}</b> of <b>${page.total}</b> in your current selection`}
          <span class="muted">· ${model.search.q === '' ? 'all products' : html`“${model.search.q}”`}, sorted by ${SORTS[model.search.sort as keyof typeof SORTS] ?? model.search.sort}</span></p>
        <table class="table" data-testid="products"><thead><tr><th>SKU</th><th>Product</th><th>Category</th><th class="num">Price</th><th class="num">Stock</th><th></th></tr></thead>
          <tbody>${rows}</tbody></table>
        ${page.count > 1 ? pager : ''}
      </section>
      <aside class="side">${cartCard(model.cart)}${sessionCard(model.panel)}</aside>
    </div>`,
  });
}

export function productPage(model: {
  user: User; notice: string; panel: SessionPanel; cart: CartView[]; product: Product;
  lock: { mine: boolean; label: string; sessionId: string; sinceMs: number } | null;
  errors: string[]; values: { name: string; category: string; price: string; stock: string };
  nav: { index: number; total: number; prevId: number | null; nextId: number | null } | null;
}): SafeHtml {
  const { product: p, lock, values } = model;
  const editable = lock?.mine === true;
  const lockBanner = lock === null
    ? banner('warn', 'This record was just released by its holder: reload to edit it.', 'lock')
    : lock.mine
      ? banner('ok', html`You are editing this record. It is locked for everyone else since ${clockTime(lock.sinceMs)}; saving or leaving the page releases it.`, 'lock')
      : banner('warn', html`Read-only: <b>locked by ${lock.label}</b> (session <code>${shortId(lock.sessionId)}</code>) since ${clockTime(lock.sinceMs)}. The lock goes when they save, leave, or their session closes for any reason.`, 'lock');
  const dis = editable ? '' : html` disabled`;
  const navLinks = model.nav === null ? '' : html`<span class="muted">Record ${model.nav.index + 1} of ${model.nav.total} in your selection</span>
    ${model.nav.prevId === null ? '' : html`<a class="btn ghost small" href="/products/${model.nav.prevId}">←</a>`}
    ${model.nav.nextId === null ? '' : html`<a class="btn ghost small" href="/products/${model.nav.nextId}">→</a>`}`;
  return layout({
    title: p.name, section: 'app', user: model.user, cartLines: model.cart.length,
    body: html`${model.notice === '' ? '' : banner('info', model.notice)}
    <div class="grid">
      <section class="card main-card" data-testid="product" data-editable="${editable ? 'yes' : 'no'}">
        <div class="crumbs"><a href="/products">← Products</a><span class="spacer"></span>${navLinks}</div>
        <h1>${p.name}</h1>
        <p class="muted mono">${p.sku}${p.updatedAtMs === null ? '' : html` · last saved ${dateTime(p.updatedAtMs)} by ${p.updatedBy ?? '?'}`}</p>
        ${lockBanner}
        ${model.errors.length === 0 ? '' : banner('error', html`<ul>${model.errors.map((e) => html`<li>${e}</li>`)}</ul>`, 'error')}
        <form class="edit" method="post" action="/products/${p.id}">
          <label>Name<input name="name" value="${values.name}" maxlength="80" required${dis}></label>
          <label>Category<select name="category"${dis}>${CATEGORIES.map((c) => html`<option${c === values.category ? html` selected` : ''}>${c}</option>`)}</select></label>
          <div class="two"><label>Price ($)<input name="price" value="${values.price}" inputmode="decimal"${dis}></label>
          <label>Stock<input name="stock" value="${values.stock}" inputmode="numeric"${dis}></label></div>
          <div class="actions">${editable ? html`<button class="btn" data-testid="save">Save and release</button>` : ''}
            ${editable ? html`<button class="btn ghost" formaction="/products/${p.id}/release" formnovalidate>Cancel</button>` : html`<a class="btn ghost" href="/products/${p.id}" data-testid="reload">Reload</a>`}</div>
        </form>
      </section>
      <aside class="side">${cartCard(model.cart)}${sessionCard(model.panel)}</aside>
    </div>`,
  });
}

function cartCard(cart: CartView[]): SafeHtml {
  const total = cart.reduce((n, l) => n + l.qty * l.product.priceCents, 0);
  return html`<section class="card side-card" data-testid="cart"><h2>Cart</h2>
    ${cart.length === 0 ? html`<p class="muted">Empty. Add products with “+ Cart”: the cart lives in the session and is saved when it closes.</p>`
      : html`<ul class="cart-lines">${cart.map((l) => html`<li><span>${l.qty} × <a href="/products/${l.product.id}">${l.product.name}</a></span>
        <form method="post" action="/cart"><input type="hidden" name="action" value="remove"><input type="hidden" name="id" value="${l.product.id}"><button class="x" title="Remove">×</button></form></li>`)}</ul>
        <p class="cart-total"><span>Total</span><b>${money(total)}</b></p>`}</section>`;
}

/** What the session holds right now: the point of the demo, so it is on every page. */
function sessionCard(s: SessionPanel): SafeHtml {
  return html`<section class="card side-card session-card" data-testid="session"><h2>This session</h2>
    <dl>
      <dt>Session</dt><dd><code data-testid="session-id">${shortId(s.sessionId) || '—'}</code> <span class="pill">${s.mode}</span></dd>
      <dt>Since</dt><dd>${s.sinceMs === null ? '—' : clockTime(s.sinceMs)} · request #${s.requests}</dd>
      <dt>Cookie expires</dt><dd>${s.expiresAtMs === null ? '—' : clockTime(s.expiresAtMs)}</dd>
      <dt>Variables</dt><dd><ul class="vars">${s.vars.map(([k, v]) => html`<li><code>${k}</code> ${v}</li>`)}</ul></dd>
      <dt>Selection</dt><dd>${s.selection === null ? 'none' : html`products: ${s.selection.size} records, position ${s.selection.position}${s.selection.queriedAtMs === null ? '' : html`<br><span class="muted">queried once at ${clockTime(s.selection.queriedAtMs)}; paging reads it</span>`}`}</dd>
      <dt>Locks</dt><dd data-testid="locks">${s.locks.length === 0 ? 'none' : s.locks.join(', ')}</dd>
    </dl>
    <p class="muted small">Closes after ${duration(s.timeoutMs)} idle, when ${s.maxSessions} sessions are open and a new one needs room, on sign-out, from the admin console, or at server stop. Every way runs the close hook first.</p>
  </section>`;
}
