// Fuzzing the cookie, in process: the Cookie header a client sends (readSessionId, acquireFor) and the
// Set-Cookie we send back for any cookie option an administrator could set (setCookieFor). These are the
// functions the HTTP binding calls on every request; the same inputs go over real sockets in
// test/fuzz-http.test.ts. Profile: FUZZ_RUNS cases per property (see test/fuzz-support.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { ManualClock, SessionEngine, SessionError, type CookieDirective, type OptionName } from '../src/index.js';
import { acquireFor, setCookieFor } from '../src/http/binding.js';
import { readSessionId } from '../src/http/cookie.js';
import {
  FUZZ, UUID_V4, assertStaleClearing, assertWellFormedSetCookie, cookieHeaderArb, guardFor, joinParts, modelSessionId, params, renderParts, type ExpectedCookie,
} from './fuzz-support.js';

const COOKIE_NAMES = ['4DSID', 'APPSID', 'sid', 'a', '__proto__', 'constructor', "!#$%&'*+-.^_`|~"] as const;
const cookieNameArb = fc.oneof(fc.constantFrom(...COOKIE_NAMES), fc.stringMatching(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,16}$/));

test(`readSessionId never throws on any header and only ever returns a 36-character string (${FUZZ.direct} cases)`, guardFor(FUZZ.direct, 1), () => {
  const headerArb = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 300 }),
    fc.string({ unit: fc.constantFrom('4', 'D', 'S', 'I', '=', ';', ' ', '%', '"', 'a'), maxLength: 80 }),
    fc.tuple(fc.string({ maxLength: 20 }), fc.integer({ min: 16_000, max: 40_000 })).map(([s, n]) => `4DSID=${'a'.repeat(36)};${s.repeat(Math.ceil(n / Math.max(1, s.length))).slice(0, n)}`),
    fc.constant(undefined),
  );
  fc.assert(fc.property(headerArb, cookieNameArb, (header, name) => {
    const id = readSessionId(header, name);
    if (id === undefined) return;
    assert.equal(typeof id, 'string');
    assert.equal(id.length, 36);
    assert.ok(header !== undefined && header.includes(name));
  }), params(FUZZ.direct));
});

test(`readSessionId names exactly the session the reference model says: first pair of that name, trimmed, decoded, 36 characters (${FUZZ.direct} cases)`, guardFor(FUZZ.direct, 1), () => {
  const pool = Array.from({ length: 8 }, () => randomUUID());
  fc.assert(fc.property(cookieHeaderArb, cookieNameArb, (shape, name) => {
    const { texts, targets } = renderParts(shape, name, pool);
    const header = joinParts(texts, shape.seps);
    assert.equal(readSessionId(header, name), modelSessionId(header, targets), JSON.stringify(header.length > 400 ? `${header.slice(0, 400)}…` : header));
  }), params(FUZZ.direct));
});

const MINUTE = 60_000;
const IPS = ['127.0.0.1', '::ffff:127.0.0.1', '127.0.0.2', '::1', '', 'not-an-ip', undefined] as const;
const sameClient = (ip: string | undefined): string => (ip === undefined ? '' : ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip);

type Step =
  | { t: 'request'; cookie: Parameters<typeof renderParts>[0]; ip: number; secure: boolean }
  | { t: 'close'; i: number }
  | { t: 'advance'; ms: number };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ t: fc.constant('request' as const), cookie: cookieHeaderArb, ip: fc.nat({ max: IPS.length - 1 }), secure: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('close' as const), i: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('advance' as const), ms: fc.constantFrom(MINUTE, 10 * MINUTE, 31 * MINUTE) }) },
);

const SCRIPTS = Math.max(1, Math.round(FUZZ.direct / 5));
test(`a client-chosen id is never adopted: only a live id from its creator's address binds, anything else gets a fresh random one (${SCRIPTS} scripts of up to 10 steps)`, guardFor(SCRIPTS, 10), async () => {
  const clock = new ManualClock();
  // A small cap (eviction) and a cookie lifetime shorter than the idle timeout (ids that expire while live).
  const engine = new SessionEngine({ clock, maxSessions: 12, inactiveProcessTimeoutMs: 40 * MINUTE, inactiveSessionTimeoutMs: 30 * MINUTE });
  // Every id ever issued (uniqueness), the recent ones (the values clients replay), the last creation.
  const everIssued = new Set<string>();
  const recent: string[] = [];
  let created = 0;
  let reissued = false;
  let lastCreated = { id: '', ip: '' };
  engine.on('create', (event) => {
    reissued ||= everIssued.has(event.sessionId);
    everIssued.add(event.sessionId);
    created++;
    lastCreated = { id: event.sessionId, ip: event.ip };
    recent.push(event.sessionId);
    if (recent.length > 48) recent.shift();
  });
  let steps = 0;
  try {
    await fc.assert(fc.asyncProperty(fc.array(stepArb, { minLength: 1, maxLength: 10 }), async (script) => {
      for (const step of script) {
        steps++;
        if (step.t === 'close') { await engine.closeSession(recent[step.i % Math.max(1, recent.length)] ?? ''); continue; }
        if (step.t === 'advance') { clock.advance(step.ms); continue; }
        const { texts, targets } = renderParts(step.cookie, '4DSID', recent.slice(-24));
        const header = joinParts(texts, step.cookie.seps);
        const named = modelSessionId(header, targets);
        const live = engine.sessions().find((s) => s.id === named && s.expiresAt.getTime() > clock.now());
        const ip = IPS[step.ip];
        const createdBefore = created;
        let lease;
        try {
          lease = await acquireFor(engine, { cookieHeader: header, remoteAddress: ip, secure: step.secure });
        } catch (error) {
          assert.ok(error instanceof SessionError, String(error));
          assert.equal(error.code, 'ERR_SESSION_IP_MISMATCH');
          assert.equal(error.httpStatus, 400);
          assert.ok(live !== undefined && live.ip !== sameClient(ip), 'refused only for a live session from another address');
          assert.equal(created, createdBefore, 'a refused request creates nothing');
          continue;
        }
        try {
          if (live !== undefined) {
            assert.equal(live.ip, sameClient(ip), 'a live session from another address must be refused');
            assert.equal(lease.sessionId, live.id);
            assert.equal(lease.isNewSession, false);
          } else {
            assert.equal(lease.isNewSession, true);
            assert.match(lease.sessionId, UUID_V4);
            assert.equal(created, createdBefore + 1);
            assert.equal(lastCreated.id, lease.sessionId);
            assert.equal(reissued, false, 'a fresh id, never one issued before');
            assert.notEqual(lease.sessionId, named, 'never the id the client sent');
            assert.equal(lastCreated.ip, sameClient(ip));
          }
          const directive = lease.cookie();
          assert.deepEqual(directive, { action: 'set', sessionId: lease.sessionId, expiresAtMs: clock.now() + 30 * MINUTE });
        } finally {
          lease.release();
        }
      }
    }), params(SCRIPTS));
    assert.ok(steps > 0 && created > 0);
    assert.equal(everIssued.size, created, 'no id issued twice');
    assert.equal(engine.stats().busySessions, 0);
  } finally {
    await engine.stop();
  }
});

// ---- Set-Cookie for any accepted option --------------------------------------------------------------

const printable = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 40 });
const hostile = fc.string({ unit: fc.constantFrom(';', '\r', '\n', '\0', ' ', ',', '=', '"', '<', '>', '\\', '\t', '\u0085', '\u2028', 'é', 'a', '/', '.', '-'), maxLength: 20 });
const labelArb = fc.stringMatching(/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,68}[A-Za-z0-9])?$/);

const cookieOptionArb: fc.Arbitrary<[OptionName, unknown]> = fc.oneof(
  fc.tuple(fc.constant('cookieName' as const), fc.oneof(fc.stringMatching(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,30}$/), printable, hostile, fc.string({ unit: 'binary', maxLength: 10 }), fc.constant('x'.repeat(2_000)))),
  fc.tuple(fc.constant('cookieDomain' as const), fc.oneof(
    fc.tuple(fc.constantFrom('', '.'), fc.array(labelArb, { minLength: 1, maxLength: 4 }), fc.constantFrom('', '.')).map(([lead, labels, trail]) => `${lead}${labels.join('.')}${trail}`),
    printable, hostile, fc.constant(undefined), fc.constant(''),
  )),
  fc.tuple(fc.constant('cookiePath' as const), fc.oneof(printable.map((p) => `/${p}`), hostile.map((p) => `/${p}`), printable, fc.string({ unit: 'binary', maxLength: 10 }).map((p) => `/${p}`), fc.constant(`/${'p'.repeat(1_100)}`))),
  fc.tuple(fc.constant('cookieSameSite' as const), fc.constantFrom('Strict', 'Lax', 'None', 'strict', 'none', '', 'Strict; Secure', true, undefined)),
  fc.tuple(fc.constant('cookieSecure' as const), fc.constantFrom(true, false, 'auto', 'true', 1, 0, null)),
);

test(`any cookie option value setOption accepts serializes to one well-formed Set-Cookie line with exactly our attributes (${FUZZ.direct} cases)`, guardFor(FUZZ.direct, 1), () => {
  const clock = new ManualClock();
  fc.assert(fc.property(fc.array(cookieOptionArb, { minLength: 1, maxLength: 6 }), fc.boolean(), (changes, requestIsSecure) => {
    const engine = new SessionEngine({ clock });
    for (const [name, value] of changes) {
      try {
        engine.setOption(name, value as never);
      } catch (error) {
        assert.ok(error instanceof TypeError, String(error));
        assert.equal((error as TypeError & { code?: string }).code, 'ERR_SESSION_INVALID_OPTION');
      }
    }
    const secureOption = engine.getOption('cookieSecure');
    const base = {
      name: engine.getOption('cookieName'), domain: engine.getOption('cookieDomain'), path: engine.getOption('cookiePath'),
      sameSite: engine.getOption('cookieSameSite'), secure: secureOption === 'auto' ? requestIsSecure : secureOption,
    };
    const directives: [CookieDirective, Omit<ExpectedCookie, keyof typeof base>][] = [
      [{ action: 'set', sessionId: '0f8e5a3c-6b1d-4c2a-9e7f-1a2b3c4d5e6f', expiresAtMs: clock.now() + 30 * MINUTE }, { value: '0f8e5a3c-6b1d-4c2a-9e7f-1a2b3c4d5e6f', clear: false, expires: new Date(clock.now() + 30 * MINUTE).toUTCString() }],
      [{ action: 'clear' }, { value: '', clear: true, expires: new Date(0).toUTCString() }],
    ];
    for (const [directive, rest] of directives) {
      let lines: string | string[] | undefined;
      assert.doesNotThrow(() => { lines = setCookieFor(engine, { cookie: () => directive, nowMs: () => clock.now() }, requestIsSecure); }, `options accepted by setOption must serialize: ${JSON.stringify(base)}`);
      assert.ok(lines !== undefined);
      // After a change of domain or path the cookie under the earlier ones is cleared first, on a 'set' only.
      const clearings = typeof lines === 'string' ? [] : lines.slice(0, -1);
      const line = typeof lines === 'string' ? lines : lines.at(-1);
      assertWellFormedSetCookie(line!, { ...base, ...rest });
      if (directive.action === 'clear') assert.deepEqual(clearings, []);
      for (const clearing of clearings) assertStaleClearing(clearing, base.name, line!);
    }
  }), params(FUZZ.direct));
});

// Counterexamples the property above found, kept as plain regressions (each names the value).
for (const [name, value] of [
  ['cookiePath', '/<'], // RFC 6265 allows '<' in a path; the cookie package's serializer refuses it
  ['cookiePath', '/a<b>'],
  ['cookieDomain', `${'a'.repeat(64)}.example.com`], // a DNS label is 63 characters at most
  ['cookieDomain', `.${'b'.repeat(70)}`],
] as const) {
  test(`setOption('${name}', ${JSON.stringify(value.length > 30 ? `${value.slice(0, 12)}…(${value.length})` : value)}) is refused, or the cookie it gives serializes`, () => {
    const engine = new SessionEngine({ clock: new ManualClock() });
    try {
      engine.setOption(name, value);
    } catch (error) {
      assert.ok(error instanceof TypeError);
      assert.equal((error as TypeError & { code?: string }).code, 'ERR_SESSION_INVALID_OPTION');
      return;
    }
    const line = setCookieFor(engine, { cookie: () => ({ action: 'set', sessionId: randomUUID(), expiresAtMs: Date.UTC(2026, 0, 1) }), nowMs: () => Date.UTC(2025, 11, 31) }, false);
    assert.ok(line?.includes(name === 'cookiePath' ? `Path=${value}` : `Domain=${value}`));
  });
}
