// The page shell shared by the app and the admin console.
import type { User } from '../db.js';
import { html, type SafeHtml } from './html.js';

export interface LayoutModel {
  readonly title: string;
  readonly body: SafeHtml;
  readonly user?: User | null;
  readonly cartLines?: number;
  readonly section: 'app' | 'admin';
  readonly script?: string;
}

const LOGO = html`<svg class="logo" viewBox="0 0 32 32" aria-hidden="true"><rect width="32" height="32" rx="8" fill="currentColor"/>
<path d="M8 12.5 16 8l8 4.5v9L16 26l-8-4.5z" fill="none" stroke="#fff" stroke-width="2" stroke-linejoin="round"/>
<path d="M8 12.5 16 17l8-4.5M16 17v9" fill="none" stroke="#fff" stroke-width="2" stroke-linejoin="round"/></svg>`;

export function layout(model: LayoutModel): SafeHtml {
  const user = model.user ?? null;
  const right = model.section === 'admin'
    ? html`<a class="navlink" href="/products">Open the app</a>
      <form method="post" action="/admin/logout"><button class="btn ghost small">Leave admin</button></form>`
    : user === null
      ? html`<a class="navlink" href="/admin">Admin</a>`
      : html`<a class="navlink" href="/admin">Admin</a>
        <span class="chip" title="${user.email}"><span class="avatar">${user.name.slice(0, 1)}</span>${user.name}<small>${user.team}</small></span>
        <span class="chip cart" data-testid="cart-count">Cart · ${model.cartLines ?? 0}</span>
        <form method="post" action="/logout"><button class="btn ghost small" data-testid="logout">Sign out</button></form>`;
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${model.title} · Stockroom</title><link rel="stylesheet" href="/assets/style.css"><link rel="icon" href="/assets/favicon.svg" type="image/svg+xml">
${model.script === undefined ? '' : html`<script src="${model.script}" defer></script>`}</head>
<body class="${model.section}">
<header class="top"><div class="wrap top-inner">
  <a class="brand" href="${model.section === 'admin' ? '/admin' : '/'}">${LOGO}<span>Stockroom</span>${model.section === 'admin' ? html`<em>admin</em>` : ''}</a>
  <nav class="top-right">${right}</nav>
</div></header>
<main class="wrap">${model.body}</main>
<footer class="wrap foot">A demo of <strong>legacy-web-sessions</strong>: 4D's legacy web sessions on Node.js, with SQLite. No passwords: it is a demo.</footer>
</body></html>`;
}

/** A one-line banner (notice, success, warning, error). */
export function banner(kind: 'info' | 'ok' | 'warn' | 'error', text: string | SafeHtml, testId = 'notice'): SafeHtml {
  return html`<div class="banner ${kind}" role="${kind === 'error' ? 'alert' : 'status'}" data-testid="${testId}">${text}</div>`;
}

/** The page for an HttpError (404, 400, 409, 413…). */
export function errorPage(status: number, message: string, user: User | null, cartLines = 0): SafeHtml {
  const title = status === 404 ? 'Not found' : status === 413 ? 'Too large' : status === 409 ? 'Conflict' : status === 401 ? 'Unauthorized' : 'Cannot do that';
  return layout({
    title, user, cartLines, section: 'app',
    body: html`<section class="card narrow center"><p class="status-code">${status}</p><h1>${title}</h1><p data-testid="error">${message}</p>
      <p><a class="btn" href="/">Back to Stockroom</a></p></section>`,
  });
}
