// Shared by the node:http tests (http.test.ts, http-cookie.test.ts): a parsed Set-Cookie, a server that
// is always stopped and closed, and small waits.
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SessionEngine, SessionVars, WebProcess } from '../src/index.js';
import { settle, startServer, type TestResponse, type TestServer } from './helpers.js';

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
export const MINUTE = 60_000;
export const EPOCH_EXPIRES = 'Thu, 01 Jan 1970 00:00:00 GMT';
/** Only a guard against a broken engine hanging the run; no test logic depends on wall time. */
export const GUARD = { timeout: 5_000 };
/** A well-formed id no session has. */
export const UNKNOWN_A = '0f8fad5b-d9cb-469f-a165-70867728950e';

export interface ParsedCookie {
  readonly raw: string;
  readonly name: string;
  readonly value: string;
  /** Attribute names lowercased; flags (HttpOnly, Secure) map to true. */
  readonly attrs: ReadonlyMap<string, string | true>;
}

export function parseSetCookie(header: string): ParsedCookie {
  const [pair = '', ...rest] = header.split(';').map((part) => part.trim());
  const eq = pair.indexOf('=');
  const attrs = new Map<string, string | true>();
  for (const part of rest) {
    const at = part.indexOf('=');
    if (at < 0) attrs.set(part.toLowerCase(), true);
    else attrs.set(part.slice(0, at).toLowerCase(), part.slice(at + 1));
  }
  return { raw: header, name: pair.slice(0, eq), value: pair.slice(eq + 1), attrs };
}

/** The one Set-Cookie of `name` in a response (fails if there are none or several). */
export function theCookie(response: TestResponse, name = '4DSID'): ParsedCookie {
  const found = response.setCookies.filter((c) => c.startsWith(`${name}=`));
  assert.equal(found.length, 1, `expected exactly one ${name} Set-Cookie, got ${JSON.stringify(response.setCookies)}`);
  return parseSetCookie(found[0] ?? '');
}

export function assertClearingCookie(response: TestResponse, name = '4DSID'): void {
  const cookie = theCookie(response, name);
  assert.equal(cookie.value, '', `clearing cookie expected, got ${cookie.raw}`);
  assert.equal(cookie.attrs.get('max-age'), '0');
  assert.equal(cookie.attrs.get('expires'), EPOCH_EXPIRES);
  assert.ok(cookie.raw.startsWith(`${name}=; Max-Age=0;`), cookie.raw);
}

/** Lets I/O and continuations run until `condition` holds (event-loop turns only, no wall-clock wait). */
export async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 5_000; i++) {
    if (condition()) return;
    await settle(1);
  }
  assert.fail(`never happened: ${what}`);
}

export function path(req: IncomingMessage): string {
  return req.url ?? '/';
}

/**
 * Runs `body` with the engine stopped and the server closed afterwards, whatever happens. `holds` are the
 * gates the test keeps requests waiting on: released first, so a failed assertion cannot hang stop().
 */
export async function withServer<Vars extends SessionVars>(
  engine: SessionEngine<Vars>,
  handler: (req: IncomingMessage, res: ServerResponse, proc: WebProcess<Vars>) => unknown,
  body: (server: TestServer) => Promise<void>,
  holds: ReadonlyArray<{ resolve: (value: void) => void }> = [],
): Promise<void> {
  const server = await startServer(engine, handler);
  try {
    await body(server);
  } finally {
    for (const hold of holds) hold.resolve();
    await engine.stop();
    await server.close();
  }
}

