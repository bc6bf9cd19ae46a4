// Shared parts of the fuzz suites (test/fuzz-*.test.ts): the run profile, generators for every input a
// client controls, a reference model of how a Cookie header names the session, and the Set-Cookie
// well-formedness check. The raw HTTP client they send with is in test/raw-http.ts.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import type { ManualClock, SessionEngine, SessionVars } from '../src/index.js';

// ---- profile --------------------------------------------------------------------------------------

/**
 * Cases per property. `FUZZ_RUNS` sets the direct (in-process) properties, `FUZZ_HTTP_RUNS` the ones
 * over real sockets; `FUZZ_SEED` replays a failure. Defaults: 2,000 direct / 400 HTTP locally, 5,000 /
 * 3,000 under CI=true (about 20 s in all), and the long profile (`npm run test:long`) at 1,000,000 direct
 * cases per property and 20,000 over HTTP.
 */
export const FUZZ = {
  direct: Number(process.env.FUZZ_RUNS ?? (process.env.CI === 'true' ? 5_000 : 2_000)),
  http: Number(process.env.FUZZ_HTTP_RUNS ?? (process.env.CI === 'true' ? 3_000 : 400)),
  seed: process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED),
};

/** fast-check parameters for `runs` cases; a failure prints the seed and the shrunk counterexample. */
export function params<T>(runs: number): fc.Parameters<T> {
  return { numRuns: runs, seed: FUZZ.seed, endOnFailure: false, verbose: 1 };
}

/** Wall-clock guard for a property (a hang fails the test instead of stalling the run). */
export function guardFor(runs: number, perCaseMs: number): { timeout: number } {
  return { timeout: Math.max(30_000, runs * perCaseMs) };
}

// ---- cookie values of every shape -----------------------------------------------------------------

export const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A recipe for the session cookie's value; `pool` shapes use ids the server really issued. */
export type ValueShape =
  | { s: 'pool'; i: number }
  | { s: 'upper'; i: number }
  | { s: 'quoted'; i: number }
  | { s: 'percent'; i: number; every: number }
  | { s: 'truncated'; i: number; cut: number }
  | { s: 'extended'; i: number; tail: string }
  | { s: 'padded'; i: number; left: string; right: string }
  | { s: 'uuid' }
  | { s: 'text'; text: string }
  | { s: 'exact36'; text: string }
  | { s: 'huge'; n: number; ch: string }
  | { s: 'badPercent'; text: string };

const anyText = (maxLength: number): fc.Arbitrary<string> => fc.oneof(
  fc.string({ maxLength }),
  fc.string({ unit: 'grapheme', maxLength }),
  fc.string({ unit: 'binary', maxLength }), // lone surrogates included
  fc.string({ unit: fc.constantFrom(...'%;=," \t\\\u00a0é中\u202e\u0000\r\n'), maxLength }),
);

const wsArb = fc.string({ unit: fc.constantFrom(' ', '\t'), maxLength: 3 });

export const valueShapeArb: fc.Arbitrary<ValueShape> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ s: fc.constant('pool' as const), i: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ s: fc.constant('upper' as const), i: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ s: fc.constant('quoted' as const), i: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ s: fc.constant('percent' as const), i: fc.nat(), every: fc.integer({ min: 1, max: 5 }) }) },
  { weight: 1, arbitrary: fc.record({ s: fc.constant('truncated' as const), i: fc.nat(), cut: fc.integer({ min: 1, max: 36 }) }) },
  { weight: 2, arbitrary: fc.record({ s: fc.constant('extended' as const), i: fc.nat(), tail: fc.oneof(anyText(6).filter((t) => t.length > 0), fc.constantFrom(';', '; x=1', ';4DSID=x', ',', '"', '=')) }) },
  { weight: 2, arbitrary: fc.record({ s: fc.constant('padded' as const), i: fc.nat(), left: fc.oneof(wsArb, fc.constantFrom('\u00a0', '\u3000', '+')), right: fc.oneof(wsArb, fc.constantFrom('\u00a0', '\u200b')) }) },
  { weight: 2, arbitrary: fc.constant({ s: 'uuid' as const }) },
  { weight: 3, arbitrary: fc.record({ s: fc.constant('text' as const), text: anyText(60) }) },
  { weight: 1, arbitrary: fc.record({ s: fc.constant('exact36' as const), text: fc.string({ unit: 'binary', minLength: 36, maxLength: 36 }) }) },
  { weight: 1, arbitrary: fc.record({ s: fc.constant('huge' as const), n: fc.integer({ min: 37, max: 20_000 }), ch: fc.constantFrom('a', '%41', 'é', ' ') }) },
  { weight: 1, arbitrary: fc.record({ s: fc.constant('badPercent' as const), text: fc.constantFrom('%', '%E0%A4%A', '%zz', '%C0%AF', '%ED%A0%80') }) },
);

export function pick(pool: readonly string[], i: number): string {
  return pool.length === 0 ? randomUUID() : pool[i % pool.length] ?? randomUUID();
}

export function renderValue(shape: ValueShape, pool: readonly string[]): string {
  switch (shape.s) {
    case 'pool': return pick(pool, shape.i);
    case 'upper': return pick(pool, shape.i).toUpperCase();
    case 'quoted': return `"${pick(pool, shape.i)}"`;
    case 'percent': return [...pick(pool, shape.i)].map((c, k) => (k % shape.every === 0 ? `%${c.charCodeAt(0).toString(16).padStart(2, '0')}` : c)).join('');
    case 'truncated': return pick(pool, shape.i).slice(0, 36 - shape.cut);
    case 'extended': return pick(pool, shape.i) + shape.tail;
    case 'padded': return shape.left + pick(pool, shape.i) + shape.right;
    case 'uuid': return randomUUID();
    case 'text': case 'exact36': case 'badPercent': return shape.text;
    case 'huge': return shape.ch.repeat(Math.ceil(shape.n / shape.ch.length)).slice(0, shape.n);
  }
}

// ---- Cookie headers built from parts, and what they must name ------------------------------------

/** One `;`-separated part of a Cookie header. */
export type PartShape =
  | { p: 'target'; lead: string; beforeEq: string; afterEq: string; value: ValueShape }
  | { p: 'other'; name: string; value: string }
  | { p: 'garbage'; text: string };

const otherNameArb = fc.oneof(
  fc.stringMatching(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,12}$/),
  fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty', 'x4DSID', '4DSIDx', '4dsid', ' 4DSID ', '4DSID\u0000', 'SID'),
  anyText(10),
);

export const partArb: fc.Arbitrary<PartShape> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ p: fc.constant('target' as const), lead: wsArb, beforeEq: wsArb, afterEq: wsArb, value: valueShapeArb }) },
  { weight: 3, arbitrary: fc.record({ p: fc.constant('other' as const), name: otherNameArb, value: anyText(30) }) },
  { weight: 1, arbitrary: fc.record({ p: fc.constant('garbage' as const), text: anyText(30) }) },
);

/** A Cookie header: its parts and the separators between them (`;` with optional whitespace, or `;;`). */
export interface CookieHeaderShape {
  readonly parts: readonly PartShape[];
  readonly seps: readonly string[];
}

export const cookieHeaderArb: fc.Arbitrary<CookieHeaderShape> = fc.record({
  parts: fc.array(partArb, { minLength: 1, maxLength: 8 }),
  seps: fc.array(fc.constantFrom('; ', ';', ';\t', ' ; ', ';; ', '; ;'), { minLength: 8, maxLength: 8 }),
});

/**
 * The text of every part. A part that is not the session cookie never parses as one: its name (the
 * text before its first `=`, without surrounding SP/HTAB) differs from `cookieName`, and it holds no
 * `;` (a `;` would start a new pair whose name the generator does not control).
 */
export function renderParts(shape: CookieHeaderShape, cookieName: string, pool: readonly string[]): { texts: string[]; targets: (string | undefined)[] } {
  const texts: string[] = [];
  const targets: (string | undefined)[] = [];
  for (const part of shape.parts) {
    if (part.p === 'target') {
      texts.push(`${part.lead}${cookieName}${part.beforeEq}=${part.afterEq}${renderValue(part.value, pool)}`);
      targets.push(texts[texts.length - 1]);
      continue;
    }
    let text = part.p === 'other' ? `${part.name}=${part.value}` : part.text;
    text = text.replaceAll(';', ',');
    const eq = text.indexOf('=');
    if (eq >= 0 && trimSpTab(text.slice(0, eq)) === cookieName) text = `x${text}`;
    texts.push(text);
    targets.push(undefined);
  }
  return { texts, targets };
}

export function joinParts(texts: readonly string[], seps: readonly string[]): string {
  return texts.map((t, k) => (k === 0 ? t : `${seps[(k - 1) % seps.length] ?? '; '}${t}`)).join('');
}

function trimSpTab(text: string): string {
  return text.replace(/^[ \t]+|[ \t]+$/g, '');
}

/**
 * Reference model, written from RFC 6265 §5.4 as the cookie package applies it (not from our code):
 * the first pair named `cookieName` wins; its value runs to the next `;`, without surrounding SP/HTAB,
 * percent-decoded when that succeeds; only a 36-character value can be a session id, however long the
 * header (the server bounds its headers).
 */
export function modelSessionId(header: string, targetTexts: readonly (string | undefined)[]): string | undefined {
  const first = targetTexts.find((t) => t !== undefined);
  if (first === undefined) return undefined;
  const afterEq = first.slice(first.indexOf('=') + 1);
  const raw = trimSpTab(afterEq.split(';')[0] ?? '');
  let value = raw;
  if (raw.includes('%')) {
    try {
      value = decodeURIComponent(raw);
    } catch {
      value = raw;
    }
  }
  return value.length === 36 ? value : undefined;
}

// ---- X-Forwarded-For ------------------------------------------------------------------------------

export const xffEntryArb: fc.Arbitrary<string> = fc.oneof(
  fc.ipV4(),
  fc.ipV6(),
  fc.constantFrom('127.0.0.1', '127.0.0.2', '::ffff:127.0.0.1', '10.0.0.1', '::1', 'unknown', '', '_hidden', '1.2.3.4:80', '[::1]:443', '999.1.1.1', '01.02.03.04'),
  anyText(20).map((t) => t.replaceAll(',', ' ')),
);

export const xffHeaderArb: fc.Arbitrary<string> = fc.tuple(
  fc.array(xffEntryArb, { minLength: 0, maxLength: 5 }),
  fc.constantFrom(', ', ',', ' , '),
).map(([entries, sep]) => entries.join(sep));

// ---- Set-Cookie: one line, exactly the attributes we set ------------------------------------------

export interface ExpectedCookie {
  readonly name: string;
  /** The id, or '' for the clearing cookie. */
  readonly value: string;
  readonly clear: boolean;
  readonly domain: string | undefined;
  readonly path: string;
  readonly expires: string;
  readonly secure: boolean;
  readonly sameSite: 'Strict' | 'Lax' | 'None';
}

/**
 * A Set-Cookie value is one well-formed line: printable ASCII only (no CR/LF/NUL, nothing a header
 * could be split or smuggled with), every `;` a separator we wrote, and exactly our attributes, in order.
 */
export function assertWellFormedSetCookie(line: string, expected: ExpectedCookie): void {
  assert.match(line, /^[\x20-\x7e]+$/, `Set-Cookie must be printable ASCII on one line: ${JSON.stringify(line)}`);
  const attributes = [
    `${expected.name}=${expected.value}`,
    ...(expected.clear ? ['Max-Age=0'] : []),
    ...(expected.domain === undefined ? [] : [`Domain=${expected.domain}`]),
    `Path=${expected.path}`,
    `Expires=${expected.expires}`,
    'HttpOnly',
    ...(expected.secure ? ['Secure'] : []),
    `SameSite=${expected.sameSite}`,
  ];
  assert.equal(line.split(';').length, attributes.length, `no ';' beyond the attribute separators: ${JSON.stringify(line)}`);
  assert.deepEqual(line.split('; '), attributes, `exactly our attributes: ${JSON.stringify(line)}`);
}

/**
 * A clearing of the session cookie under an earlier domain or path (stale-cookies.ts): one printable
 * line, same name, empty value, Max-Age=0, and another Domain or Path than `current` (clearing the
 * cookie just set would sign the browser out).
 */
export function assertStaleClearing(line: string, name: string, current: string): void {
  assert.match(line, /^[\x20-\x7e]+$/, `Set-Cookie must be printable ASCII on one line: ${JSON.stringify(line)}`);
  const parts = line.split('; ');
  assert.equal(parts[0], `${name}=`, `a clearing of the same cookie name: ${line}`);
  assert.ok(parts.includes('Max-Age=0'), `a clearing: ${line}`);
  // As a browser keys it: the domain in lower case without a leading dot (the clearings go before the
  // cookie set, so even one a cookie jar takes for the same would not lose it; none is sent at all).
  const scope = (l: string): string => l.split('; ').filter((p) => p.startsWith('Domain=') || p.startsWith('Path='))
    .map((p) => (p.startsWith('Domain=') ? `Domain=${p.slice(7).replace(/^\./, '').toLowerCase()}` : p)).join('; ');
  assert.notEqual(scope(line), scope(current), `a clearing never names the cookie just set: ${line} vs ${current}`);
}

// ---- process-wide failure traps -------------------------------------------------------------------

/** Collects unhandled rejections and uncaught exceptions while `body` runs (each one is a failure). */
export async function trapProcessFailures<T>(body: () => Promise<T>): Promise<{ value: T; failures: unknown[] }> {
  const failures: unknown[] = [];
  const onFailure = (error: unknown): void => { failures.push(error); };
  process.on('unhandledRejection', onFailure);
  process.on('uncaughtException', onFailure);
  try {
    const value = await body();
    // Rejections are reported after the microtask queue drains: give them a turn to surface.
    await new Promise((resolve) => setImmediate(resolve));
    return { value, failures };
  } finally {
    process.off('unhandledRejection', onFailure);
    process.off('uncaughtException', onFailure);
  }
}

/**
 * Cleanup that never hangs: stops the engine, moving a manual clock past `closeTimeoutMs` if something
 * still holds a close (a failed assertion can leave a request or hook behind).
 */
export async function stopWithin(engine: Pick<SessionEngine<SessionVars>, 'stop' | 'getOption'>, clock?: ManualClock): Promise<void> {
  let stopped = false;
  void engine.stop().then(() => { stopped = true; });
  for (let round = 0; round < 50 && !stopped; round++) {
    await new Promise((resolve) => setImmediate(resolve));
    if (!stopped && round % 5 === 4) clock?.advance(engine.getOption('closeTimeoutMs'));
  }
}
