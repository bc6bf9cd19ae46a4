// What every contract test uses: a fresh engine, app and server per test, and ways to read responses.

import assert from 'node:assert/strict';
import * as http from 'node:http';
import { ManualClock, SessionEngine, type SessionEngineOptions, type SessionError, type SessionStore } from '../../src/index.js';
import { request, sessionIdOf, settle, type TestResponse } from '../helpers.js';
import { appHooks, ContractApp, type AppVars, type ContractServer, type StartServer } from './app.js';

/** Only a guard against a broken adapter hanging the run; no test logic depends on wall time. */
export const GUARD = { timeout: 10_000 };

export interface ContractContext {
  readonly server: ContractServer;
  readonly app: ContractApp;
  readonly engine: SessionEngine<AppVars>;
  readonly clock: ManualClock;
  readonly errors: SessionError[];
}

/** Where the contract's engines keep their sessions: the memory store unless a test file chose another. */
let storeFactory: (() => SessionStore) | undefined;

/** Runs this file's contract on another store (one fresh store per engine). */
export function runContractOn(factory: () => SessionStore): void {
  storeFactory = factory;
}

/** Runs `body` against a fresh engine and server; whatever happens, held requests are let go and both stop. */
export async function withApp(start: StartServer, options: SessionEngineOptions<AppVars>, body: (ctx: ContractContext) => Promise<void>): Promise<void> {
  const clock = new ManualClock();
  const { hooks, init, onClose } = appHooks();
  const store = storeFactory?.();
  const engine = new SessionEngine<AppVars>({ clock, init, onClose, ...(store === undefined ? {} : { store }), ...options });
  const errors: SessionError[] = [];
  engine.on('error', (error) => errors.push(error));
  const app = new ContractApp(engine, hooks);
  const server = await start(engine, app);
  try {
    await body({ server, app, engine, clock, errors });
  } finally {
    app.gate.resolve();
    await engine.stop();
    await server.close();
  }
}

/** A request whose client hangs up once `ready` resolves or holds; resolves when the server saw it leave. */
export async function abandonedRequest(server: ContractServer, path: string, cookie: string, ready: Promise<void> | (() => boolean)): Promise<void> {
  const connections = (): Promise<number> => new Promise((resolve, reject) => server.server.getConnections((error, count) => (error ? reject(error) : resolve(count))));
  const before = await connections();
  const url = new URL(`${server.url}${path}`);
  const req = http.request({ host: url.hostname, port: url.port, path: url.pathname, headers: { cookie }, agent: false });
  req.on('error', () => {}); // the hang-up is ours
  req.end();
  if (typeof ready === 'function') await until(ready, `${path} is ready to be abandoned`);
  else await ready;
  req.destroy();
  await until(async () => (await connections()) === before, 'the server saw the client leave');
}

/**
 * `/partial` fails ('late secret') after its head went out, `/` answers the session id: the connection
 * is cut, the failure reported once, and the session's next request is served.
 */
export async function expectCutAfterTheHead(server: ContractServer, errors: unknown[]): Promise<void> {
  const id = sessionIdOf(await request(server.url));
  await assert.rejects(request(server.url, { path: '/partial', cookie: `4DSID=${id}` }));
  const next = await request(server.url, { cookie: `4DSID=${id}` });
  assert.deepEqual([next.status, next.body], [200, id]);
  assert.deepEqual(errors.map((e) => ((e as Error).cause as Error).message), ['late secret']);
}

// ---- reading responses ----------------------------------------------------------------------------

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
export const EPOCH_EXPIRES = 'Thu, 01 Jan 1970 00:00:00 GMT';

export interface ParsedCookie {
  readonly raw: string;
  readonly value: string;
  /** Attribute names lowercased; flags (HttpOnly, Secure) map to true. */
  readonly attrs: ReadonlyMap<string, string | true>;
}

/** The one 4DSID Set-Cookie of a response (fails if there are none or several). */
export function theCookie(response: TestResponse, name = '4DSID'): ParsedCookie {
  const found = response.setCookies.filter((c) => c.startsWith(`${name}=`));
  assert.equal(found.length, 1, `expected exactly one ${name} Set-Cookie, got ${JSON.stringify(response.setCookies)}`);
  const raw = found[0] ?? '';
  const [pair = '', ...rest] = raw.split(';').map((part) => part.trim());
  const attrs = new Map<string, string | true>();
  for (const part of rest) {
    const at = part.indexOf('=');
    if (at < 0) attrs.set(part.toLowerCase(), true);
    else attrs.set(part.slice(0, at).toLowerCase(), part.slice(at + 1));
  }
  return { raw, value: pair.slice(name.length + 1), attrs };
}

export function assertClearingCookie(response: TestResponse): void {
  const cookie = theCookie(response);
  assert.equal(cookie.value, '', `clearing cookie expected, got ${cookie.raw}`);
  assert.equal(cookie.attrs.get('max-age'), '0', cookie.raw);
  assert.equal(cookie.attrs.get('expires'), EPOCH_EXPIRES, cookie.raw);
}

/** Parses a JSON body, failing with the body in the message. */
export function json(response: TestResponse): Record<string, unknown> {
  assert.equal(response.status, 200, `status ${response.status}: ${response.body}`);
  return JSON.parse(response.body) as Record<string, unknown>;
}

/** Lets I/O and continuations run until `condition` holds (event-loop turns only, no wall-clock wait). */
export async function until(condition: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 5_000; i++) {
    if (await condition()) return;
    await settle(1);
  }
  assert.fail(`never happened: ${what}`);
}

/** A POST with a text/plain body (every framework parses that type), and the cookie if given. */
export function post(url: string, path: string, body: string, cookie?: string): Promise<TestResponse> {
  return request(url, { path, method: 'POST', headers: { 'content-type': 'text/plain' }, body, ...(cookie === undefined ? {} : { cookie }) });
}

/**
 * A POST whose body arrives in two parts: the second only once `ready()` holds (the server is reading).
 * Bytes that arrive later are emitted by the HTTP parser, outside the request's async context: the case
 * where a body parser would lose the session's process unless the adapter carries it.
 */
export async function slowPost(url: string, path: string, body: string, cookie: string, ready: () => boolean): Promise<TestResponse> {
  const target = new URL(`${url}${path}`);
  let responded!: (response: TestResponse) => void;
  let failed!: (error: unknown) => void;
  const response = new Promise<TestResponse>((resolve, reject) => { responded = resolve; failed = reject; });
  const req = http.request({
    host: target.hostname, port: target.port, path: target.pathname, method: 'POST', agent: false,
    headers: { cookie, 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(body)) },
  }, (res) => {
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => { text += chunk; });
    res.on('end', () => responded({ status: res.statusCode ?? 0, headers: res.headers, body: text, setCookies: res.headers['set-cookie'] ?? [] }));
  });
  req.on('error', failed);
  req.write(body.slice(0, 1));
  await until(ready, 'the server is reading the body');
  await settle();
  req.end(body.slice(1));
  return response;
}
