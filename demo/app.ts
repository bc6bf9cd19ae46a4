// Wiring of the Stockroom demo: database, session engine (init = Compiler_Web, onClose = On Web Legacy
// Close Session), routes, metrics, and a graceful close. `startDemo` serves it in-process (tests use port 0
// and a ManualClock); demo/server.ts is the `npm start` entry around it.
import type * as http from 'node:http';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { SessionEngine, SessionError, systemClock, type Clock, type CloseReason, type RuntimeOptions, type WebProcess } from '../src/index.js';
import { createServer } from '../src/adapters/node/index.js';
import { use4D, type FourDCommands } from '../src/compat-4d.js';
import { AdminAuth, generateToken } from './auth.js';
import { DemoDb } from './db.js';
import { cookies, FORM_MAX_BYTES, HttpError, Router, sendHtml, sendText, type Ctx } from './http.js';
import { createMetrics, type DemoMetrics } from './metrics.js';
import { adminRoutes } from './routes/admin.js';
import { appRoutes } from './routes/app.js';
import { closeHook, compilerWeb, onWebConnection, SessionDirectory, type DemoVars } from './session.js';
import { errorPage } from './views/layout.js';

export const DEFAULT_DB_PATH = fileURLToPath(new URL('../data/stockroom.sqlite', import.meta.url));

export interface DemoOptions {
  /** @default 8080 (0: any free port) */
  port?: number;
  /** @default all interfaces */
  host?: string;
  /** SQLite file, created and seeded when missing. @default ./data/stockroom.sqlite */
  dbPath?: string;
  /** Time source of the engine, the locks and the app (tests pass a ManualClock). @default systemClock */
  clock?: Clock;
  /** @default a random token (RunningDemo.tokenGenerated says so) */
  adminToken?: string;
  /** Engine options over the demo's defaults. */
  engine?: Partial<RuntimeOptions>;
  /** @default 3000 */
  productCount?: number;
  /** Where engine errors go. @default stderr */
  log?: (line: string) => void;
}

/** What the routes share. */
export interface App {
  readonly engine: SessionEngine<DemoVars>;
  readonly db: DemoDb;
  readonly clock: Clock;
  readonly directory: SessionDirectory;
  readonly auth: AdminAuth;
  readonly fourD: FourDCommands;
}

export interface RunningDemo {
  readonly url: string;
  readonly port: number;
  readonly engine: SessionEngine<DemoVars>;
  readonly db: DemoDb;
  readonly adminToken: string;
  readonly tokenGenerated: boolean;
  /** Graceful stop: refuse new work, run every session's close hook, close the server and the database. */
  close(): Promise<void>;
}

// Small enough to watch eviction happen, large enough for a team; both timeouts changeable on /admin.
const ENGINE_DEFAULTS: Partial<RuntimeOptions> = {
  maxSessions: 50,
  inactiveProcessTimeoutMs: 20 * 60_000,
  inactiveSessionTimeoutMs: 60 * 60_000,
  closeTimeoutMs: 5_000,
};

export async function startDemo(options: DemoOptions = {}): Promise<RunningDemo> {
  const clock = options.clock ?? systemClock;
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const adminToken = options.adminToken ?? generateToken();
  const auth = new AdminAuth(adminToken); // a bad token fails here, before any file is touched
  const db = new DemoDb(options.dbPath ?? DEFAULT_DB_PATH, options.productCount);
  const directory = new SessionDirectory();

  const metrics = createMetrics();
  const saveOnClose = closeHook(db, clock);
  // Sessions whose hook ran (outside legacy mode, none does), and whether every save of theirs succeeded.
  const hooked = new Map<string, boolean>();
  // Sessions whose save was not stored: a session of the same user used more recently saved newer state.
  const superseded = new Set<string>();
  const engine = new SessionEngine<DemoVars>({
    ...ENGINE_DEFAULTS, ...options.engine, clock,
    init: compilerWeb,
    onClose: metrics.timeHook((proc: WebProcess<DemoVars>, reason: CloseReason) => {
      if (!hooked.has(proc.sessionId)) hooked.set(proc.sessionId, true);
      try {
        if (!saveOnClose(proc, reason)) superseded.add(proc.sessionId);
      } catch (error) {
        hooked.set(proc.sessionId, false); // the user must not be told it was saved
        throw error;
      }
    }),
  });
  metrics.watch(engine);
  engine.on('close', (event) => {
    // Outside legacy mode the engine closes sessions without a hook: the log says so, nothing is saved.
    const saved = hooked.get(event.sessionId);
    hooked.delete(event.sessionId);
    if (saved === undefined) {
      db.logClose({ sessionId: event.sessionId, login: null, reason: event.reason, atMs: clock.now(), saved: 'onClose not called (not legacy mode): nothing saved' });
    }
    const notStored = superseded.delete(event.sessionId);
    directory.closed(event.sessionId, event.reason, clock.now(), saved === true, notStored);
  });
  engine.on('error', (error) => log(`session error ${error.code}: ${error.message}${error.cause instanceof Error ? ` (${error.cause.message})` : ''}`));

  const app: App = { engine, db, clock, directory, auth, fourD: use4D(engine) };
  const router = new Router();
  appRoutes(router);
  adminRoutes(router);

  // Static files, health checks and metric scrapes must not create or touch a session: a scraper sends no
  // cookie, so each scrape would open a session (and at the cap, evict a user's).
  const server = createServer(engine, (req, res, proc) => handle(app, router, req, res, proc), {
    sessionless: (req, res) => serveSessionless(app, metrics, req, res),
  });

  server.listen(options.port ?? 8080, options.host);
  try {
    await once(server, 'listening');
  } catch (error) {
    await engine.stop();
    db.close();
    throw error;
  }
  const { port } = server.address() as AddressInfo;
  const serverClosed = once(server, 'close');
  let closing: Promise<void> | undefined;
  return {
    url: `http://${options.host === undefined || options.host === '0.0.0.0' || options.host === '::' ? 'localhost' : options.host}:${port}`,
    port, engine, db, adminToken, tokenGenerated: options.adminToken === undefined,
    close: () => (closing ??= (async () => {
      server.close(); // no new connections; requests on open ones get 503 from the stopping engine
      await engine.stop();
      server.closeAllConnections();
      await serverClosed;
      db.close();
    })()),
  };
}

async function handle(app: App, router: Router, req: http.IncomingMessage, res: http.ServerResponse, proc: WebProcess<DemoVars>): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  onWebConnection(proc, app.engine.currentSessionId(), cookies(req)[app.engine.getOption('cookieName')], app.directory, app.clock.now());
  try {
    const match = router.match(req.method ?? 'GET', url.pathname);
    if (match === undefined) throw new HttpError(404, `There is no page at ${url.pathname.slice(0, 80)}.`);
    if ('allow' in match) {
      res.setHeader('allow', match.allow.join(', '));
      throw new HttpError(405, `${req.method ?? ''} is not allowed here.`);
    }
    const ctx: Ctx = { req, res, proc, url, params: match.params, app };
    await match.handler(ctx);
  } catch (error) {
    const tooLarge = error instanceof SessionError && error.code === 'ERR_SESSION_BODY_TOO_LARGE';
    if (!(error instanceof HttpError || tooLarge) || res.headersSent) throw error; // createServer answers a generic 500
    const status = tooLarge ? 413 : (error as HttpError).status;
    const message = tooLarge ? `A form here is at most ${FORM_MAX_BYTES / 1024} KiB.` : (error as HttpError).message;
    // After a sign-out in this request, vars are reset to {}: user is then undefined.
    const vars = proc.vars as Partial<DemoVars>;
    sendHtml(res, status, errorPage(status, message, vars.user ?? null, vars.cart?.length));
  }
}

const ASSET_TYPES: Readonly<Record<string, string>> = { css: 'text/css; charset=utf-8', js: 'text/javascript; charset=utf-8', svg: 'image/svg+xml' };
const ASSETS = new Map(['style.css', 'admin.js', 'favicon.svg'].map((name) => [
  `/assets/${name}`,
  { body: readFileSync(new URL(`./assets/${name}`, import.meta.url)), type: ASSET_TYPES[name.split('.').pop() ?? ''] ?? 'application/octet-stream' },
]));

/** Answers the routes that live outside sessions; false for every other request. */
function serveSessionless(app: App, metrics: DemoMetrics, req: http.IncomingMessage, res: http.ServerResponse): boolean {
  const path = (req.url ?? '/').split('?')[0] ?? '/';
  const asset = ASSETS.get(path);
  if (asset !== undefined) {
    res.writeHead(200, { 'content-type': asset.type, 'cache-control': 'public, max-age=300', 'x-content-type-options': 'nosniff' }).end(asset.body);
    return true;
  }
  if (path === '/healthz') {
    sendText(res, 200, 'ok\n');
    return true;
  }
  if (path !== '/metrics') return false;
  if (!app.auth.allows(req)) {
    sendText(res, 401, 'admin token required: Authorization: Bearer <ADMIN_TOKEN>\n', { 'www-authenticate': 'Bearer realm="stockroom"' });
    return true;
  }
  metrics.registry.metrics().then(
    (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType, 'cache-control': 'no-store' }).end(text),
    () => sendText(res, 500, 'metrics failed\n'),
  );
  return true;
}
