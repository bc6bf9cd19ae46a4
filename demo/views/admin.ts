// The admin console: sign-in, the live region (stats, sessions, recent closes; re-fetched every 2 s by
// /assets/admin.js), and the options form (outside the live region, so typing is never interrupted).
import type { EngineStats } from '../../src/index.js';
import type { CloseRecord } from '../db.js';
import { banner, layout } from './layout.js';
import { clockTime, duration, html, plural, shortId, type SafeHtml } from './html.js';

export interface AdminSessionRow {
  readonly id: string;
  readonly label: string | null;
  readonly ip: string;
  readonly createdAtMs: number;
  readonly idleMs: number;
  readonly busy: boolean;
  readonly processCount: number;
  readonly locks: readonly string[];
  readonly expiresAtMs: number;
}

export interface LiveModel {
  readonly me: string;
  readonly nowMs: number;
  readonly stats: EngineStats;
  readonly maxSessions: number;
  readonly locksHeld: number;
  readonly sessions: readonly AdminSessionRow[];
  readonly closes: readonly CloseRecord[];
}

export interface OptionValues {
  readonly maxSessions: string;
  readonly inactiveProcessTimeout: string;
  readonly inactiveSessionTimeout: string;
  readonly mode: string;
}

export function adminLoginPage(error: string): SafeHtml {
  return layout({
    title: 'Admin sign-in', section: 'admin',
    body: html`<section class="card narrow">
      <h1>Admin console</h1>
      <p class="muted">Paste the admin token: <code>npm start</code> prints it when <code>ADMIN_TOKEN</code> is not set.</p>
      ${error === '' ? '' : banner('error', error, 'error')}
      <form method="post" action="/admin/login" class="stack">
        <label>Token<input type="password" name="token" autocomplete="current-password" required autofocus></label>
        <button class="btn" data-testid="admin-login">Open the console</button>
      </form></section>`,
  });
}

export function adminPage(model: { live: LiveModel; flash: SafeHtml | ''; errors: string[]; values: OptionValues; mode: string }): SafeHtml {
  const v = model.values;
  const mode = (value: string, label: string): SafeHtml => html`<option value="${value}"${v.mode === value ? html` selected` : ''}>${label}</option>`;
  return layout({
    title: 'Admin', section: 'admin', script: '/assets/admin.js',
    body: html`<div class="admin-head"><h1>Sessions</h1><span id="live-status" class="live" data-testid="live-status">Live</span></div>
    ${model.flash}
    <div class="admin-grid">
      <div id="live" data-testid="live">${liveRegion(model.live)}</div>
      <aside class="side">
        <section class="card side-card" data-testid="options"><h2>Options</h2>
          <p class="muted small">Applied at once with WEB SET OPTION. 0 restores a default.</p>
          ${model.errors.length === 0 ? '' : banner('error', html`<ul>${model.errors.map((e) => html`<li>${e}</li>`)}</ul>`, 'error')}
          <form method="post" action="/admin/options" class="stack">
            <label>Max sessions <small>Web max sessions (71)</small><input name="maxSessions" value="${v.maxSessions}" inputmode="numeric"></label>
            <label>Inactive process timeout, min <small>(78): idle → closed</small><input name="inactiveProcessTimeout" value="${v.inactiveProcessTimeout}" inputmode="numeric"></label>
            <label>Inactive session timeout, min <small>(72): cookie lifetime</small><input name="inactiveSessionTimeout" value="${v.inactiveSessionTimeout}" inputmode="numeric"></label>
            <label>Mode<select name="mode">${mode('legacy', 'legacy — hooks run')}${mode('scalable', 'scalable — no close hook')}${mode('none', 'none — no sessions')}</select></label>
            <button class="btn" data-testid="apply-options">Apply</button>
          </form></section>
        <section class="card side-card"><h2>Metrics</h2>
          <p class="muted small">Prometheus text format at <code>/metrics</code>, with <code>Authorization: Bearer $ADMIN_TOKEN</code> (or this console's cookie).</p>
          <p><a class="btn ghost small" href="/metrics">Open /metrics</a></p></section>
      </aside>
    </div>`,
  });
}

/** The part of the console that /admin/live returns and the page swaps in place. */
export function liveRegion(m: LiveModel): SafeHtml {
  const s = m.stats;
  // Every cause answered 503 (all but the IP mismatch's 400).
  const refused = Object.entries(s.rejected).reduce((sum, [cause, count]) => (cause === 'ipMismatch' ? sum : sum + count), 0);
  const stat = (label: string, value: string | number | SafeHtml, note: string | SafeHtml = '', id = ''): SafeHtml =>
    html`<div class="stat"${id === '' ? '' : html` data-testid="${id}"`}><span class="stat-label">${label}</span><b>${value}</b><small>${note}</small></div>`;
  const rows = m.sessions.map((r) => html`<tr data-session="${r.id}" class="${r.id === m.me ? 'me' : ''}">
    <td><code title="${r.id}">${shortId(r.id)}</code>${r.id === m.me ? html` <span class="pill">you</span>` : ''}</td>
    <td>${r.label ?? html`<span class="muted">guest</span>`}</td>
    <td class="mono">${r.ip}</td>
    <td>${clockTime(r.createdAtMs)}</td>
    <td data-testid="idle">${r.busy ? html`<span class="muted">—</span>` : duration(r.idleMs)}</td>
    <td>${r.busy ? html`<span class="pill busy">busy</span>` : html`<span class="pill idle">idle</span>`}</td>
    <td class="num">${r.processCount}</td>
    <td>${r.locks.length === 0 ? html`<span class="muted">—</span>` : r.locks.join(', ')}</td>
    <td>${clockTime(r.expiresAtMs)}</td>
    <td class="act"><form method="post" action="/admin/sessions/close"><input type="hidden" name="id" value="${r.id}">
      <button class="btn danger small" data-testid="close-${shortId(r.id)}" title="WEB LEGACY CLOSE SESSION">Close</button></form></td></tr>`);
  const closes = m.closes.map((c) => html`<tr><td>${clockTime(c.atMs)}</td><td><code>${shortId(c.sessionId)}</code></td>
    <td>${c.login ?? html`<span class="muted">—</span>`}</td><td><span class="pill reason-${c.reason}">${c.reason}</span></td><td class="saved">${c.saved}</td></tr>`);
  return html`<div class="stats">
      ${stat('Sessions', html`${s.sessions}<small> / ${m.maxSessions}</small>`, `${s.idleSessions} idle`, 'stat-sessions')}
      ${stat('Busy', s.busySessions, `${s.queuedRequests} queued`)}
      ${stat('Processes', s.processes, `${s.closingSessions} closing`)}
      ${stat('Locks', m.locksHeld, 'records locked')}
      ${stat('Closed', s.closed.closed + s.closed.evicted + s.closed.timeout + s.closed.shutdown, `${s.closed.evicted} evicted · ${s.closed.timeout} timed out`)}
      ${stat('503s', refused, `${s.rejected.sessionLimit} at the cap`)}
      ${stat('Hook errors', s.hookErrors + s.hookTimeouts, `${s.hookTimeouts} timed out`, 'stat-hook-errors')}
    </div>
    <section class="card"><h2>Live sessions <span class="muted small">(${plural(m.sessions.length, 'session')})</span></h2>
      <div class="scroll"><table class="table" data-testid="sessions"><thead><tr><th>Session</th><th>User</th><th>IP</th><th>Created</th><th>Idle for</th><th>State</th>
        <th class="num">Proc.</th><th>Locks</th><th>Expires</th><th></th></tr></thead>
        <tbody>${rows.length === 0 ? html`<tr><td colspan="10" class="muted">No session open.</td></tr>` : rows}</tbody></table></div></section>
    <section class="card"><h2>Recent closes <span class="muted small">what On Web Legacy Close Session saved</span></h2>
      <div class="scroll"><table class="table" data-testid="closes"><thead><tr><th>Time</th><th>Session</th><th>User</th><th>Reason</th><th>Saved by the hook</th></tr></thead>
        <tbody>${closes.length === 0 ? html`<tr><td colspan="5" class="muted">No session closed yet.</td></tr>` : closes}</tbody></table></div></section>
    <p class="muted small">Updated ${clockTime(m.nowMs)}</p>`;
}
