// The admin console: live sessions with a Close button (WEB LEGACY CLOSE SESSION), run-time options
// (WEB SET OPTION), and the log of what the close hook saved.
import { SessionOptionError, type SessionMode } from '../../src/index.js';
import { Web_inactive_process_timeout, Web_inactive_session_timeout, Web_max_sessions } from '../../src/compat-4d.js';
import { HttpError, integerField, readPostForm, redirect, sendHtml, sendText, type Ctx, type Router } from '../http.js';
import { lockLabel } from '../session.js';
import { adminLoginPage, adminPage, liveRegion, type LiveModel, type OptionValues } from '../views/admin.js';
import { banner } from '../views/layout.js';
import { html, shortId, type SafeHtml } from '../views/html.js';

const MINUTE_MS = 60_000;
// The engine accepts up to 366 days; the form says so in minutes.
const MAX_MINUTES = 366 * 24 * 60;
const MODES: readonly SessionMode[] = ['legacy', 'scalable', 'none'];

export function adminRoutes(router: Router): void {
  router
    .add('GET', '/admin', (ctx) => (authorized(ctx) ? showConsole(ctx, 200, flashOf(ctx), [], currentValues(ctx)) : sendHtml(ctx.res, 401, adminLoginPage(''))))
    .add('POST', '/admin/login', login)
    .add('POST', '/admin/logout', async (ctx) => {
      await readPostForm(ctx.req);
      ctx.proc.vars.admin = false;
      if (ctx.proc.vars.user === null) ctx.app.directory.unlabel(ctx.proc.sessionId);
      // Only a signed-in admin voids the admin cookies (anyone may post here).
      if (authorized(ctx)) ctx.app.auth.signOut();
      ctx.res.setHeader('set-cookie', ctx.app.auth.clearCookie());
      redirect(ctx.res, '/');
    })
    .add('GET', '/admin/live', (ctx) => {
      if (!authorized(ctx)) return sendText(ctx.res, 401, 'admin token required\n');
      sendHtml(ctx.res, 200, liveRegion(liveModel(ctx)));
    })
    .add('POST', '/admin/sessions/close', closeSession)
    .add('POST', '/admin/options', applyOptions);
}

/** Bearer token or admin cookie; an authorized request marks its session as the console's. */
function authorized(ctx: Ctx): boolean {
  if (!ctx.app.auth.allows(ctx.req)) return false;
  ctx.proc.vars.admin = true;
  if (ctx.proc.sessionId !== '' && ctx.proc.vars.user === null) ctx.app.directory.label(ctx.proc.sessionId, 'admin console');
  return true;
}

function requireAdmin(ctx: Ctx): void {
  if (!authorized(ctx)) throw new HttpError(401, 'This needs the admin token: sign in at /admin.');
}

async function login(ctx: Ctx): Promise<void> {
  const form = await readPostForm(ctx.req);
  const matches = ctx.app.auth.tokenMatches(form.get('token') ?? '', ctx.req.socket.remoteAddress ?? '');
  if (matches === 'throttled') return sendHtml(ctx.res, 429, adminLoginPage('Too many wrong tokens from this address: try again in a minute.'));
  if (!matches) return sendHtml(ctx.res, 401, adminLoginPage('That is not the admin token.'));
  ctx.res.setHeader('set-cookie', ctx.app.auth.setCookie());
  redirect(ctx.res, '/admin');
}

async function closeSession(ctx: Ctx): Promise<void> {
  requireAdmin(ctx);
  const id = (await readPostForm(ctx.req)).get('id') ?? '';
  // WEB LEGACY CLOSE SESSION from another session's request: resolves once the target's hook has saved
  // and its locks are released, so the page that follows already shows the lock gone.
  // Closing the console's own session works too: the answer clears its cookie; the admin cookie stays.
  const closed = await ctx.app.engine.closeSession(id);
  // Its hook may have failed (the close goes on without it): the flash says whether it saved.
  const info = closed ? ctx.app.directory.closedInfo(id) : undefined;
  const unsaved = info?.saved === false ? '&unsaved=1' : info?.superseded === true ? '&superseded=1' : '';
  redirect(ctx.res, closed ? `/admin?closed=${encodeURIComponent(shortId(id))}${unsaved}` : '/admin?closed=none');
}

async function applyOptions(ctx: Ctx): Promise<void> {
  requireAdmin(ctx);
  const form = await readPostForm(ctx.req);
  const values: OptionValues = {
    maxSessions: form.get('maxSessions') ?? '', inactiveProcessTimeout: form.get('inactiveProcessTimeout') ?? '',
    inactiveSessionTimeout: form.get('inactiveSessionTimeout') ?? '', mode: form.get('mode') ?? '',
  };
  const errors: string[] = [];
  const field = (text: string, label: string, max: number): number => {
    try {
      return integerField(text, label, 0, max);
    } catch (error) {
      if (!(error instanceof HttpError)) throw error;
      errors.push(error.message);
      return 0;
    }
  };
  // The engine reads maxSessions clamped to maxConcurrentProcesses (not on this form): a larger value would
  // be "applied" as that, so it is refused here with the real bound.
  const maxSessions = field(values.maxSessions, 'Max sessions', ctx.app.engine.getOption('maxConcurrentProcesses'));
  const processMinutes = field(values.inactiveProcessTimeout, 'Inactive process timeout', MAX_MINUTES);
  const sessionMinutes = field(values.inactiveSessionTimeout, 'Inactive session timeout', MAX_MINUTES);
  if (!(MODES as readonly string[]).includes(values.mode)) errors.push(`Mode must be one of: ${MODES.join(', ')}.`);
  if (errors.length > 0) return showConsole(ctx, 400, '', errors, values);

  const { engine, fourD } = ctx.app;
  const before = { maxSessions: engine.getOption('maxSessions'), process: engine.getOption('inactiveProcessTimeoutMs'), session: engine.getOption('inactiveSessionTimeoutMs'), mode: engine.getOption('mode') };
  try {
    // The 4D selectors, as a 4D method would call them: minutes, and 0 restores the default.
    fourD.WEB_SET_OPTION(Web_max_sessions, maxSessions);
    fourD.WEB_SET_OPTION(Web_inactive_process_timeout, processMinutes);
    fourD.WEB_SET_OPTION(Web_inactive_session_timeout, sessionMinutes);
    engine.setOption('mode', values.mode as SessionMode);
  } catch (error) {
    if (!(error instanceof SessionOptionError)) throw error;
    // All or nothing: put back what was applied before the refused value.
    engine.setOption('maxSessions', before.maxSessions);
    engine.setOption('inactiveProcessTimeoutMs', before.process);
    engine.setOption('inactiveSessionTimeoutMs', before.session);
    engine.setOption('mode', before.mode);
    return showConsole(ctx, 400, '', [error.message], values);
  }
  redirect(ctx.res, '/admin?applied=1');
}

function showConsole(ctx: Ctx, status: number, flash: SafeHtml | '', errors: string[], values: OptionValues): void {
  sendHtml(ctx.res, status, adminPage({ live: liveModel(ctx), flash, errors, values, mode: ctx.app.engine.getOption('mode') }));
}

function currentValues(ctx: Ctx): OptionValues {
  const { engine } = ctx.app;
  return {
    maxSessions: String(engine.getOption('maxSessions')),
    inactiveProcessTimeout: String(Math.round(engine.getOption('inactiveProcessTimeoutMs') / MINUTE_MS)),
    inactiveSessionTimeout: String(Math.round(engine.getOption('inactiveSessionTimeoutMs') / MINUTE_MS)),
    mode: engine.getOption('mode'),
  };
}

function flashOf(ctx: Ctx): SafeHtml | '' {
  const params = ctx.url.searchParams;
  const closed = params.get('closed');
  if (closed === 'none') return banner('warn', 'Nothing closed: the session had already gone, or the engine is not in legacy mode (closeSession returns false).', 'flash');
  if (closed !== null && params.get('unsaved') === '1') return banner('warn', html`Session <code>${closed.slice(0, 8)}</code> closed, but its hook failed: its cart and search were not saved (the error is in the server's log). Its locks are released; its browser gets a new session on its next request.`, 'flash');
  if (closed !== null && params.get('superseded') === '1') return banner('ok', html`Session <code>${closed.slice(0, 8)}</code> closed: its hook ran, but a session of the same user used more recently had saved newer state, which was kept. Its locks are released; its browser gets a new session on its next request.`, 'flash');
  if (closed !== null) return banner('ok', html`Session <code>${closed.slice(0, 8)}</code> closed: its hook saved it and its locks are released. Its browser gets a new session on its next request.`, 'flash');
  if (params.get('applied') === '1') return banner('ok', 'Options applied.', 'flash');
  return '';
}

function liveModel(ctx: Ctx): LiveModel {
  const { engine, clock, directory, db } = ctx.app;
  const nowMs = clock.now();
  const sessions = engine.sessions().map((s) => ({
    id: s.id, label: directory.labelOf(s.id) ?? null, ip: s.ip, createdAtMs: s.createdAt.getTime(),
    idleMs: nowMs - s.lastActivityAt.getTime(), busy: s.busy, processCount: s.processCount,
    locks: s.locks.map(lockLabel), expiresAtMs: s.expiresAt.getTime(),
  }));
  return {
    me: ctx.proc.sessionId, nowMs, stats: engine.stats(), maxSessions: engine.getOption('maxSessions'),
    locksHeld: sessions.reduce((n, s) => n + s.locks.length, 0), sessions: sessions.reverse(), closes: db.recentCloses(12),
  };
}
