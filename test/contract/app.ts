// The application every server of the contract suite runs, and what the suite needs around it. Each
// adapter's test file wires the same routes in its framework's idiom and calls `app.handle()`: so a
// difference between two runs of the suite is a difference between adapters, not between apps.

import type * as http from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { SessionError, type CloseReason, type SessionEngine, type WebProcess } from '../../src/index.js';
import { deferred, settle } from '../helpers.js';

export interface AppVars {
  n: number;
  user?: string;
  x?: string;
}

/** What an adapter passes to the application: the path, the process the request got, its body as text. */
export interface AppRequest {
  readonly path: string;
  readonly proc: WebProcess<object>;
  readonly body: string;
}

/** What the adapter sends back: 200, text/plain, the body, and the app's own cookies set its framework's way. */
export interface AppAnswer {
  readonly body: string;
  readonly cookies?: readonly string[];
}

export interface ContractServer {
  readonly url: string;
  /** The node:http server underneath (every framework has one): its connection count shows a client leaving. */
  readonly server: http.Server;
  close(): Promise<void>;
}

/** Builds a server with the contract routes for `engine`, listening on 127.0.0.1 port 0. */
export type StartServer = (engine: SessionEngine<AppVars>, app: ContractApp) => Promise<ContractServer>;

type Deferred = ReturnType<typeof deferred<void>>;

/**
 * Routes: `/` counts; `/hold` waits for `gate`; `/logout` closes its own session; `/throw` and `/reject`
 * fail with secrets in the message; `/too-large` lets a 413 SessionError escape; `/cookie` sets two
 * cookies of its own; `/login` names a user.
 */
export class ContractApp {
  readonly engine: SessionEngine<AppVars>;
  /** Resolved when a /hold request has started (the first one only). */
  readonly started: Deferred = deferred();
  /** /hold requests wait for this. */
  readonly gate: Deferred = deferred();
  /** Handler runs in progress and the most seen at once: requests of one session must never overlap. */
  inFlight = 0;
  maxInFlight = 0;
  readonly order: string[] = [];
  hooksSeenByHold = -1;
  /** Hooks run by the engine's onClose, in order. */
  readonly hooks: Array<{ reason: CloseReason; sessionId: string; vars: AppVars }>;

  constructor(engine: SessionEngine<AppVars>, hooks: Array<{ reason: CloseReason; sessionId: string; vars: AppVars }>) {
    this.engine = engine;
    this.hooks = hooks;
  }

  async handle(request: AppRequest): Promise<AppAnswer> {
    const vars = request.proc.vars as AppVars;
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    this.order.push(`start ${request.path}`);
    try {
      return await this.#route(request, vars);
    } finally {
      this.order.push(`end ${request.path}`);
      this.inFlight--;
    }
  }

  async #route(request: AppRequest, vars: AppVars): Promise<AppAnswer> {
    const state = (): string => JSON.stringify({ n: vars.n, user: vars.user ?? null, x: vars.x ?? null, sid: this.engine.currentSessionId(), body: request.body });
    switch (request.path) {
      case '/login':
        vars.user = request.body || 'alice';
        return { body: state() };
      case '/hold':
        vars.n++;
        vars.x = 'before';
        this.started.resolve();
        await this.gate.promise;
        vars.x = 'after'; // written after an outside close began: the hook sees it, no later session does
        this.hooksSeenByHold = this.hooks.length;
        return { body: state() };
      case '/logout': {
        const closed = await this.engine.closeSession(request.proc.sessionId);
        return { body: JSON.stringify({ closed, hooksBefore: this.hooks.length, varsAfter: request.proc.vars, sid: this.engine.currentSessionId(), body: request.body }) };
      }
      case '/throw':
        vars.n++;
        throw new Error('secret-sync-detail password=hunter2');
      case '/reject':
        vars.n++;
        await settle(1);
        throw new Error('secret-async-detail token=abc');
      case '/too-large':
        vars.n++;
        throw new SessionError('ERR_SESSION_BODY_TOO_LARGE', 'as readBody refuses a body');
      case '/cookie':
        return { body: 'ok', cookies: ['app=1; Path=/', 'theme=dark'] };
      default:
        vars.n++;
        return { body: state() };
    }
  }
}

/** A fresh engine option set for the app: `init` gives n = 0, `onClose` records into `hooks`. */
export function appHooks(): { hooks: ContractApp['hooks']; init: () => AppVars; onClose: (proc: WebProcess<AppVars>, reason: CloseReason) => void } {
  const hooks: ContractApp['hooks'] = [];
  return {
    hooks,
    init: () => ({ n: 0 }),
    onClose: (proc, reason) => { hooks.push({ reason, sessionId: proc.sessionId, vars: { ...proc.vars } }); },
  };
}

/** Listens on 127.0.0.1, port 0, and closes every connection on close. */
export async function listen(server: http.Server, closeApp?: () => Promise<void>): Promise<ContractServer> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    close: async () => {
      server.closeAllConnections();
      if (closeApp !== undefined) return closeApp();
      server.close();
      await once(server, 'close');
    },
  };
}
