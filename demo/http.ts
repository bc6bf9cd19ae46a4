// Small HTTP helpers for the demo: a router with path parameters, HTML answers with safe headers, form
// reading with a size limit, and an error type whose message is meant for the user.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseCookie } from 'cookie';
import { readForm } from '../src/adapters/node/index.js';
import type { WebProcess } from '../src/index.js';
import type { App } from './app.js';
import type { DemoVars } from './session.js';
import type { SafeHtml } from './views/html.js';

/** A failure to show the user as is: a status and a message that is safe to display. */
export class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

export interface Ctx {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly proc: WebProcess<DemoVars>;
  readonly url: URL;
  readonly params: Readonly<Record<string, string>>;
  readonly app: App;
}

export type Handler = (ctx: Ctx) => unknown;

interface Route { readonly method: string; readonly pattern: RegExp; readonly keys: string[]; readonly handler: Handler }

/** Routes by method and path; `:name` segments become `params.name`. */
export class Router {
  readonly #routes: Route[] = [];

  add(method: 'GET' | 'POST', path: string, handler: Handler): this {
    const keys: string[] = [];
    const source = path.replace(/:(\w+)/g, (_, key: string) => { keys.push(key); return '([^/]+)'; });
    this.#routes.push({ method, pattern: new RegExp(`^${source}$`), keys, handler });
    return this;
  }

  /** The handler and its parameters; `405` when the path exists for other methods only; undefined when unknown. */
  match(method: string, path: string): { handler: Handler; params: Record<string, string> } | { allow: string[] } | undefined {
    const allow: string[] = [];
    for (const route of this.#routes) {
      const found = route.pattern.exec(path);
      if (found === null) continue;
      if (route.method !== method && !(method === 'HEAD' && route.method === 'GET')) {
        allow.push(route.method);
        continue;
      }
      const params: Record<string, string> = {};
      try {
        route.keys.forEach((key, i) => { params[key] = decodeURIComponent(found[i + 1] ?? ''); });
      } catch {
        return undefined; // a malformed %-escape names no resource: 404, not a 500
      }
      return { handler: route.handler, params };
    }
    return allow.length > 0 ? { allow } : undefined;
  }
}

// Pages are dynamic and per session: never cached; scripts only from our own /assets.
const PAGE_HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
  'content-security-policy': "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
} as const;

export function sendHtml(res: ServerResponse, status: number, body: SafeHtml, headers: Record<string, string | string[]> = {}): void {
  res.writeHead(status, { ...PAGE_HEADERS, ...headers }).end(String(body));
}

export function sendText(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', ...headers }).end(body);
}

/** 303 See Other: the answer to a POST, so a reload never posts twice. */
export function redirect(res: ServerResponse, location: string): void {
  res.writeHead(303, { location, 'cache-control': 'no-store' }).end();
}

/** Forms here are a few fields: 8 KiB is generous, and more is refused with 413. */
export const FORM_MAX_BYTES = 8 * 1024;

export function readPostForm(req: IncomingMessage): Promise<URLSearchParams> {
  return readForm(req, { maxBytes: FORM_MAX_BYTES });
}

export function cookies(req: IncomingMessage): Record<string, string | undefined> {
  return req.headers.cookie === undefined ? {} : parseCookie(req.headers.cookie);
}

/** A whole number within bounds, or a 400 naming the field. */
export function integerField(value: string | null, label: string, min: number, max: number): number {
  const text = (value ?? '').trim();
  if (!/^-?\d{1,12}$/.test(text)) throw new HttpError(400, `${label} must be a whole number.`);
  const n = Number(text);
  if (n < min || n > max) throw new HttpError(400, `${label} must be between ${min} and ${max}.`);
  return n;
}
