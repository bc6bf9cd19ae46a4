import type { CloseReason, EngineStats, SessionInfo } from '../src/index.js';

const escapeHtml = (text: string): string =>
  text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c);
const short = (id: string): string => escapeHtml(id.slice(0, 8));
const ago = (date: Date): string => `${Math.round((Date.now() - date.getTime()) / 1000)} s ago`;

export interface PageModel {
  me: string;
  vars: { visits: number; name: string };
  sessions: SessionInfo[];
  stats: EngineStats;
  closes: { sessionId: string; reason: CloseReason; at: Date; vars: { visits: number; name: string } }[];
}

export function renderPage(model: PageModel): string {
  const rows = model.sessions.map((s) => `<tr${s.id === model.me ? ' class="me"' : ''}><td><code>${short(s.id)}</code></td><td>${escapeHtml(s.ip)}</td>
    <td>${ago(s.lastActivityAt)}</td><td>${s.busy ? 'busy' : 'idle'}</td>
    <td><form method="post" action="/close"><input type="hidden" name="id" value="${escapeHtml(s.id)}"><button>Close</button></form></td></tr>`).join('');
  const closes = model.closes.map((c) => `<li><code>${short(c.sessionId)}</code> ${c.reason} at ${c.at.toISOString().slice(11, 19)}: hook saw
    ${c.vars.visits} visit(s)${c.vars.name ? ` by ${escapeHtml(c.vars.name)}` : ''}</li>`).join('');
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>legacy-web-sessions demo</title>
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;width:100%}td,th{padding:.3rem .5rem;border-bottom:1px solid #ddd;text-align:left}
tr.me{background:#eef6ff}code{font-size:.9em}.card{border:1px solid #ddd;border-radius:8px;padding:1rem;margin:1rem 0}</style></head><body>
<h1>Legacy web sessions</h1>
<div class="card"><p>This browser's session <code>${short(model.me)}</code>: visit <b>${model.vars.visits}</b>${model.vars.name ? `, name <b>${escapeHtml(model.vars.name)}</b>` : ''}.</p>
<form method="post" action="/name"><input name="name" placeholder="your name" maxlength="40"> <button>Keep in session</button></form>
<form method="post" action="/logout"><button>Log out (closes this session)</button></form></div>
<h2>Live sessions (${model.stats.sessions} of at most 5)</h2>
<table><tr><th>id</th><th>ip</th><th>last activity</th><th>state</th><th></th></tr>${rows}</table>
<p>Closed so far: ${Object.entries(model.stats.closed).map(([r, n]) => `${r} ${n}`).join(', ')}.</p>
<h2>Recent closes (onClose saw the context intact)</h2><ul>${closes || '<li>none yet</li>'}</ul>
</body></html>`;
}
