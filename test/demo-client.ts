// Test support for the demo suites: the demo started in-process on a temporary database, and a tiny
// browser-like client (cookie jar, 303 redirects followed) over the project's request helper.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDemo, type DemoOptions, type RunningDemo } from '../demo/app.js';
import { request, type TestResponse } from './helpers.js';

export const ADMIN_TOKEN = 'test-admin-token-1234';

export interface TestDemo extends RunningDemo {
  readonly dbPath: string;
  readonly logs: string[];
  /** Stops the demo (every hook runs) and deletes its temporary directory. */
  stop(): Promise<void>;
}

export async function startTestDemo(options: DemoOptions = {}): Promise<TestDemo> {
  const dir = mkdtempSync(join(tmpdir(), 'stockroom-'));
  const dbPath = join(dir, 'stockroom.sqlite');
  const logs: string[] = [];
  const demo = await startDemo({ port: 0, host: '127.0.0.1', dbPath, adminToken: ADMIN_TOKEN, log: (line) => logs.push(line), ...options });
  return {
    ...demo,
    dbPath,
    logs,
    stop: async () => {
      await demo.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** One browser: keeps its cookies, follows 303s (as a browser does after a form post). */
export class Client {
  readonly #base: string;
  readonly #jar = new Map<string, string>();
  readonly #headers: Record<string, string>;

  constructor(base: string, headers: Record<string, string> = {}) {
    this.#base = base;
    this.#headers = headers;
  }

  cookie(name: string): string | undefined {
    return this.#jar.get(name);
  }

  get sessionId(): string | undefined {
    return this.#jar.get('4DSID');
  }

  get(path: string): Promise<TestResponse> {
    return this.send('GET', path);
  }

  post(path: string, form: Record<string, string> = {}): Promise<TestResponse> {
    return this.send('POST', path, new URLSearchParams(form).toString());
  }

  /** The response after redirects; `follow: false` returns the first one. */
  async send(method: string, path: string, body?: string, follow = true, headers: Record<string, string> = {}): Promise<TestResponse> {
    const cookie = [...this.#jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const response = await request(this.#base, {
      method, path, body, cookie: cookie === '' ? undefined : cookie,
      headers: { ...this.#headers, ...headers, ...(body === undefined ? {} : { 'content-type': 'application/x-www-form-urlencoded' }) },
    });
    for (const header of response.setCookies) {
      const [pair = '', ...attrs] = header.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const cleared = attrs.some((a) => /^\s*max-age=0\s*$/i.test(a)) || pair.slice(eq + 1) === '';
      if (cleared) this.#jar.delete(name);
      else this.#jar.set(name, pair.slice(eq + 1));
    }
    const location = response.headers.location;
    if (follow && response.status === 303 && typeof location === 'string') return this.send('GET', location);
    return response;
  }

  /** Signs in as `login` and returns the page signing in leads to. */
  signIn(login: string): Promise<TestResponse> {
    return this.post('/login', { user: login });
  }
}

/** The text of the first element with `data-testid="<id>"` (tags stripped, spaces collapsed); undefined if absent. */
export function testId(body: string, id: string): string | undefined {
  const open = new RegExp(`<(\\w+)[^>]*data-testid="${id}"[^>]*>`).exec(body);
  if (open === null) return undefined;
  const tag = open[1] ?? '';
  // Walk to the matching close tag, counting nested elements of the same name.
  const pattern = new RegExp(`<(/?)${tag}\\b[^>]*>`, 'g');
  pattern.lastIndex = open.index + open[0].length;
  let depth = 1;
  let end = body.length;
  for (let m = pattern.exec(body); m !== null; m = pattern.exec(body)) {
    depth += m[1] === '/' ? -1 : 1;
    if (depth === 0) { end = m.index; break; }
  }
  // Block-level and label tags separate words; inline ones (a, code, em) do not.
  const text = body.slice(open.index + open[0].length, end)
    .replace(/<\/?(?:li|ul|ol|div|p|tr|td|th|dt|dd|h\d|section|br|span|b|small)\b[^>]*>/g, ' ')
    .replace(/<[^>]+>/g, '').replace(/\s+/g, ' ').replace(/ ([).,])/g, '$1').trim();
  return text.replace(/&(amp|lt|gt|quot|#39);/g, (_, e: string) => ({ amp: '&', lt: '<', gt: '>', quot: '"', '#39': "'" })[e] ?? e);
}

/** The value of `attribute` on the element with `data-testid="<id>"`. */
export function testAttr(body: string, id: string, attribute: string): string | undefined {
  const open = new RegExp(`<\\w+[^>]*data-testid="${id}"[^>]*>`).exec(body)?.[0];
  return open === undefined ? undefined : new RegExp(`${attribute}="([^"]*)"`).exec(open)?.[1];
}

/** Product ids linked from a products page, in page order. */
export function productIds(body: string): number[] {
  const table = /data-testid="products"[\s\S]*?<\/table>/.exec(body)?.[0] ?? '';
  return [...table.matchAll(/<a href="\/products\/(\d+)">/g)].map((m) => Number(m[1]));
}
