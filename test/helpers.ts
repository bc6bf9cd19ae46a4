import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { setImmediate as nextTurn, setTimeout as delay } from 'node:timers/promises';
import { SessionEngine, type SessionEngineOptions, type SessionError, type SessionVars } from '../src/index.js';
import { createServer, type SessionHandler, type SessionServerOptions } from '../src/adapters/node/index.js';

/** A promise with its resolve exposed: lets a test hold a request open and release it on cue. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void; reject: (error: unknown) => void } {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}

/** Lets queued promise continuations and immediates run (not a sleep: no wall time passes on purpose). */
export async function settle(turns = 5): Promise<void> {
  for (let i = 0; i < turns; i++) await nextTurn();
}

/**
 * Polls `condition` (undefined: it holds; a string: why not yet) every millisecond or so, the first checks
 * on the next turns of the event loop, until it holds or `withinMs` passed; returns the last answer.
 * For what another process or Redis does in its own time; the engine's own time goes by ManualClock.
 */
export async function poll(condition: () => Promise<string | undefined> | string | undefined, withinMs = 5_000): Promise<string | undefined> {
  const deadline = Date.now() + withinMs;
  for (let turn = 0; ; turn++) {
    const why = await condition();
    if (why === undefined || Date.now() > deadline) return why;
    if (turn < 3) await nextTurn();
    else await delay(1);
  }
}

/** True once `done()` holds, false if it still does not after `withinMs`. */
export async function eventually(done: () => boolean | Promise<boolean>, withinMs = 2_000): Promise<boolean> {
  return (await poll(async () => ((await done()) ? undefined : 'not yet'), withinMs)) === undefined;
}

/** An engine whose 'error' events are collected instead of becoming process warnings. */
let forceGc: (() => void) | undefined;

/**
 * True once the object behind `ref` has been collected (a full GC forced between the checks), false if
 * not within `withinMs`: an object something still holds (a map that leaks) is never collected.
 */
export function collected(ref: WeakRef<object>, withinMs = 5_000): Promise<boolean> {
  if (forceGc === undefined) {
    setFlagsFromString('--expose-gc');
    forceGc = runInNewContext('gc') as () => void;
  }
  const gc = forceGc;
  return eventually(() => { gc(); return ref.deref() === undefined; }, withinMs);
}

export function engineWithErrors<Vars extends SessionVars = Record<string, unknown>>(options: SessionEngineOptions<Vars> = {}): { engine: SessionEngine<Vars>; errors: SessionError[] } {
  const engine = new SessionEngine<Vars>(options);
  const errors: SessionError[] = [];
  engine.on('error', (error) => errors.push(error));
  return { engine, errors };
}

export interface TestServer {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/** A real node:http server on 127.0.0.1, port 0. */
export async function startServer<Vars extends SessionVars>(engine: SessionEngine<Vars>, handler: SessionHandler<Vars>, options?: SessionServerOptions): Promise<TestServer> {
  const server = createServer(engine, handler, options);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

export interface TestResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
  /** Every Set-Cookie header value. */
  readonly setCookies: string[];
}

/**
 * One HTTP request with full control of the Cookie header and the source address (127.0.0.2 is a
 * second loopback client). No cookie jar: each test says exactly what it sends.
 */
export function request(url: string, options: { path?: string; cookie?: string; localAddress?: string; method?: string; headers?: http.OutgoingHttpHeaders; body?: string } = {}): Promise<TestResponse> {
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = { ...options.headers };
    if (options.cookie !== undefined) headers.cookie = options.cookie;
    const req = http.request(`${url}${options.path ?? '/'}`, { method: options.method ?? 'GET', headers, localAddress: options.localAddress, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { body += chunk; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, setCookies: res.headers['set-cookie'] ?? [] }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** `name=value` of the session cookie in a response, ready to send back; undefined if none was set. */
export function sessionCookie(response: TestResponse, name = '4DSID'): string | undefined {
  const header = response.setCookies.find((c) => c.startsWith(`${name}=`));
  return header?.split(';')[0];
}

/** The session id a response's cookie carries ('' for a clearing cookie). */
export function sessionIdOf(response: TestResponse, name = '4DSID'): string | undefined {
  return sessionCookie(response, name)?.slice(name.length + 1);
}
