// A server under load for bench/adapters.ts and bench/peers.ts: one framework, bare, with our sessions or
// (Express, Fastify) with the session library its users would pick instead, in its own process pinned to
// the server core: `taskset -c 0 node --import tsx bench/adapter-server.ts <framework> <bare|ours|peer>`.
// Every variant runs the same application code (read a counter, increment it, answer its value), so a
// ratio ours/bare is what the session layer costs inside that framework.

import { AsyncLocalStorage } from 'node:async_hooks';
import * as http from 'node:http';
import { createAdaptorServer } from '@hono/node-server';
import express from 'express';
import Fastify from 'fastify';
import fastifyCookie from '@fastify/cookie';
import fastifySession from '@fastify/session';
import expressSession from 'express-session';
import { Hono } from 'hono';
import type { WebProcess } from '../src/index.js';
import { serveOverIpc } from './child.js';
import { loadCore, loadExpressAdapter, loadFastifyAdapter, loadHonoAdapter, loadNodeAdapter, loadRedisStore } from './library.js';
import { BENCH_REDIS_PREFIX, BENCH_REDIS_URL, isFrameworkName, isServerKind, RETURNING_SESSIONS, type FrameworkName } from './protocol.js';

const [framework, kind, stateBytesArg = '0'] = process.argv.slice(2);
/** > 0: each session also carries a string this long, and only one request in ten writes (read-mostly, large state). */
const stateBytes = Number(stateBytesArg);
const peerFramework = framework === 'express' || framework === 'fastify';
if (!isFrameworkName(framework) || !isServerKind(kind) || kind === 'control' || (kind === 'peer' && (!peerFramework || stateBytesArg !== '0')) || !Number.isInteger(stateBytes) || stateBytes < 0 || process.send === undefined) {
  console.error('usage: node --import tsx bench/adapter-server.ts <node|node-als|express|fastify|hono|hono-middleware|redis> <bare|ours> [stateBytes]\n'
    + '       node --import tsx bench/adapter-server.ts <express|fastify> peer (started by bench/adapters.ts or bench/peers.ts, with an IPC channel)');
  process.exit(2);
}

interface Vars { hits: number; profile?: string }
let handled = 0;
let errors = 0;
/** Sessions the peer library created (a session without a counter yet); ours reports engine.stats(). */
let peerSessionsCreated = 0;
const newVars = (): Vars => (stateBytes > 0 ? { hits: 0, profile: 'x'.repeat(stateBytes) } : { hits: 0 });
const bareHits: Vars = newVars();

const { DEFAULT_OPTIONS, SessionEngine } = await loadCore();
const { createServer } = await loadNodeAdapter();

// Returning visitors only: the caps equal the pre-created sessions, so nothing is ever evicted (checked by the parent).
// 'redis': the same node:http server with its sessions in Redis (one node of a cluster).
const engine = kind === 'ours'
  ? new SessionEngine<Vars>({
    maxSessions: RETURNING_SESSIONS, maxConcurrentProcesses: RETURNING_SESSIONS, init: newVars,
    ...(framework === 'redis' ? { store: (await loadRedisStore()).createRedisStore({ url: BENCH_REDIS_URL, prefix: BENCH_REDIS_PREFIX, onStop: 'keep' }) } : {}),
  })
  : undefined;
// A listener, so an error is counted instead of becoming a process warning per request.
engine?.on('error', () => { errors++; });

/** The application: the same for every server; only where the counter lives differs. */
function hit(proc: WebProcess<object> | undefined): string {
  handled++;
  const vars = proc === undefined ? bareHits : proc.vars as Vars;
  if (stateBytes === 0) return String(++vars.hits);
  // Read-mostly: every request reads the large part, one in ten writes.
  if (handled % 10 === 0) vars.hits++;
  return `${vars.hits} ${vars.profile?.length ?? 0}`;
}

/** The peers' cookie lifetime: ours by default (inactiveSessionTimeoutMs), refreshed on every response as ours is. */
const PEER_COOKIE = { maxAge: DEFAULT_OPTIONS.inactiveSessionTimeoutMs, httpOnly: true, sameSite: 'strict', secure: false } as const;
const PEER_SECRET = 'bench-only secret, 32 characters or more';

/** The application with a peer library: read the counter from its session, write it back, answer it. */
function peerHit(session: { hits?: number | undefined }): string {
  handled++;
  if (session.hits === undefined) peerSessionsCreated++;
  session.hits = (session.hits ?? 0) + 1;
  return String(session.hits);
}

async function buildPeer(name: 'express' | 'fastify'): Promise<http.Server> {
  if (name === 'express') {
    // express-session's own MemoryStore; rolling: Set-Cookie on every response; a session is saved (and
    // its cookie first sent) once the application writes to it.
    const app = express();
    app.use(expressSession({ secret: PEER_SECRET, resave: false, saveUninitialized: false, rolling: true, cookie: PEER_COOKIE }));
    app.get('/', (req, res) => { res.send(peerHit(req.session)); });
    return http.createServer(app);
  }
  // @fastify/session's default (memory) store; rolling is its default.
  const app = Fastify();
  await app.register(fastifyCookie);
  await app.register(fastifySession, { secret: PEER_SECRET, saveUninitialized: false, rolling: true, cookie: PEER_COOKIE });
  app.get('/', async (request) => {
    const session = { hits: request.session.get('hits') };
    const body = peerHit(session);
    request.session.set('hits', session.hits);
    return body;
  });
  await app.ready();
  return app.server;
}

async function build(name: FrameworkName): Promise<http.Server> {
  if (kind === 'peer' && (name === 'express' || name === 'fastify')) return buildPeer(name);
  switch (name) {
    case 'node':
    case 'redis':
      return engine === undefined
        ? http.createServer((_req, res) => { res.end(hit(undefined)); })
        : createServer(engine, (_req, res, proc) => { res.end(hit(proc)); });
    case 'node-als': {
      if (engine !== undefined) return createServer(engine, (_req, res, proc) => { res.end(hit(proc)); });
      // Each request in an async context of its own, as ours runs each handler (and nothing else of ours).
      const context = new AsyncLocalStorage<object>();
      return http.createServer((_req, res) => { context.run({}, () => { res.end(hit(undefined)); }); });
    }
    case 'express': {
      const app = express();
      if (engine !== undefined) app.use((await loadExpressAdapter()).sessions(engine));
      app.get('/', (req, res) => { res.send(hit(engine === undefined ? undefined : req.proc)); });
      return http.createServer(app);
    }
    case 'fastify': {
      const app = Fastify();
      if (engine !== undefined) await app.register((await loadFastifyAdapter()).sessions, { engine });
      app.get('/', async (request) => hit(engine === undefined ? undefined : request.proc));
      await app.ready();
      return app.server;
    }
    case 'hono':
    case 'hono-middleware': {
      const app = new Hono();
      if (engine !== undefined) app.use((await loadHonoAdapter()).sessions(engine));
      else if (name === 'hono-middleware') app.use((_c, next) => next());
      app.get('/', (c) => c.text(hit(engine === undefined ? undefined : c.get('proc'))));
      return createAdaptorServer({ fetch: app.fetch }) as http.Server;
    }
  }
}

serveOverIpc(await build(framework), () => ({ handled, hooks: 0, errors, engine: engine?.stats(), ...(kind === 'peer' ? { peerSessionsCreated } : {}) }));

// The counter each peer keeps in its sessions.
declare module 'express-session' {
  interface SessionData { hits?: number }
}
declare module 'fastify' {
  interface Session { hits?: number }
}
