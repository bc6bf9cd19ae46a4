// Fuzzing option values: setOption(name, value), the constructor, and the 4D selectors through
// use4D(engine).WEB_SET_OPTION. An option setter either applies a valid value (and reads it back) or
// throws a TypeError with a `code` and changes nothing — never another exception, never half a change.
// Profile: FUZZ_RUNS cases per property (see test/fuzz-support.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ManualClock, OPTION_NAMES, SessionEngine, type CookieDirective, type OptionName } from '../src/index.js';
import {
  Web_inactive_process_timeout, Web_inactive_session_timeout, Web_legacy_session, Web_max_concurrent_processes, Web_max_sessions,
  Web_scalable_session, Web_session_cookie_domain, Web_session_cookie_name, Web_session_cookie_path, Web_session_enable_IP_address_validation, use4D,
} from '../src/compat-4d.js';
import { setCookieFor } from '../src/http/binding.js';
import { FUZZ, assertStaleClearing, assertWellFormedSetCookie, guardFor, params } from './fuzz-support.js';

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;

/** Values of every type and shape, including objects that throw when anything touches them. */
const hostile = new WeakSet<object>();
const hostileObject = (): unknown => {
  const proxy = new Proxy({}, {
  // Only fast-check's own printer may look at it (to report a counterexample).
  get: (_target, key) => { if (key === fc.toStringMethod) return () => 'hostileProxy'; if (typeof key === 'symbol') return undefined; throw new Error('touched'); },
  has: (_target, key) => { if (typeof key === 'symbol') return key === fc.toStringMethod; throw new Error('touched'); },
  ownKeys: () => { throw new Error('touched'); },
  });
  hostile.add(proxy);
  return proxy;
};
/** Prints any value for a message, whatever it is (String() throws on some). */
const show = (value: unknown): string => fc.stringify(value);
const coercible = (): unknown => ({ valueOf: () => 5, toString: () => '/x', [Symbol.toPrimitive]: () => 5 });

const valueArb: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: -5, max: 2_000 }) },
  { weight: 2, arbitrary: fc.integer() },
  { weight: 2, arbitrary: fc.constantFrom(0, -0, 1, -1, 1.5, 0.1, NaN, Infinity, -Infinity, 2 ** 31, 2 ** 31 - 1, 2 ** 53, Number.MAX_SAFE_INTEGER + 2, 1e308, 5e-324, 366 * DAY, 366 * DAY + 1, 10_000_000, 10_000_001, 100_000, 100_001) },
  { weight: 1, arbitrary: fc.double() },
  { weight: 3, arbitrary: fc.constantFrom('legacy', 'scalable', 'none', 'Legacy', 'Strict', 'Lax', 'None', 'auto', 'true', 'false', '1', '0', '', ' ', '4DSID', 'APPSID', 'example.com', '.example.com', '/*.4d.fr', '*.4d.fr', '/', '/app', '/<', '/a;b', '/a\r\nX: y', 'a=b', 'a;b', 'a\nb', '\u0000', 'é', '/é', `${'a'.repeat(64)}.com`) },
  { weight: 2, arbitrary: fc.string({ maxLength: 30 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }) },
  { weight: 2, arbitrary: fc.constantFrom(true, false, null, undefined) },
  { weight: 1, arbitrary: fc.anything() },
  { weight: 1, arbitrary: fc.constantFrom(1n, Symbol('s'), () => 1) },
  { weight: 1, arbitrary: fc.constant(null).map(() => hostileObject()) },
  { weight: 1, arbitrary: fc.constant(null).map(() => coercible()) },
  { weight: 1, arbitrary: fc.constant(null).map(() => Object.create(null) as unknown) },
);

const nameArb: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 10, arbitrary: fc.constantFrom(...OPTION_NAMES) },
  { weight: 1, arbitrary: fc.constantFrom('clock', 'locks', 'init', 'onClose', '__proto__', 'constructor', 'toString', 'hasOwnProperty', '', 'MaxSessions', 'maxsessions', ' maxSessions') },
  { weight: 1, arbitrary: fc.string({ maxLength: 20 }) },
  { weight: 1, arbitrary: fc.constantFrom(0, 71, null, undefined, Symbol('maxSessions'), {}) },
);

const isInt = (v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): v is number => typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * The domain of each option, restated from the README (not from src/options.ts): `valid` holds every
 * accepted value; `plainlyValid` are values so ordinary that refusing them would be a bug.
 */
const DOMAIN: Record<OptionName, { valid(v: unknown): boolean; plainlyValid(v: unknown): boolean }> = {
  mode: { valid: (v) => v === 'legacy' || v === 'scalable' || v === 'none', plainlyValid: (v) => v === 'legacy' || v === 'scalable' || v === 'none' },
  maxSessions: { valid: (v) => isInt(v, 1), plainlyValid: (v) => isInt(v, 1, 1_000_000) },
  maxConcurrentProcesses: { valid: (v) => isInt(v, 1), plainlyValid: (v) => isInt(v, 1, 1_000_000) },
  inactiveProcessTimeoutMs: { valid: (v) => isInt(v, 1), plainlyValid: (v) => isInt(v, 1, 31 * DAY) },
  inactiveSessionTimeoutMs: { valid: (v) => isInt(v, 1), plainlyValid: (v) => isInt(v, 1, 31 * DAY) },
  closeTimeoutMs: { valid: (v) => isInt(v, 1), plainlyValid: (v) => isInt(v, 1, DAY) },
  queueTimeoutMs: { valid: (v) => isInt(v, 1), plainlyValid: (v) => isInt(v, 1, DAY) },
  cookieName: { valid: (v) => typeof v === 'string' && TOKEN.test(v), plainlyValid: (v) => typeof v === 'string' && v.length <= 64 && TOKEN.test(v) },
  cookieDomain: { valid: (v) => v === undefined || (typeof v === 'string' && /^\.?[A-Za-z0-9.-]+$/.test(v)), plainlyValid: (v) => v === undefined || v === 'example.com' || v === '.example.com' },
  cookiePath: { valid: (v) => typeof v === 'string' && /^\/[\x20-\x3a\x3c-\x7e]*$/.test(v), plainlyValid: (v) => typeof v === 'string' && /^\/[A-Za-z0-9/_.-]{0,60}$/.test(v) },
  cookieSameSite: { valid: (v) => v === 'Strict' || v === 'Lax' || v === 'None', plainlyValid: (v) => v === 'Strict' || v === 'Lax' },
  cookieSecure: { valid: (v) => v === 'auto' || v === true || v === false, plainlyValid: (v) => v === 'auto' || v === true || v === false },
  ipValidation: { valid: (v) => v === true || v === false, plainlyValid: (v) => v === true || v === false },
  trustProxy: { valid: (v) => v === true || v === false || isInt(v, 1), plainlyValid: (v) => v === true || v === false || isInt(v, 1, 10) },
  processesPerSession: { valid: (v) => isInt(v, 1), plainlyValid: (v) => isInt(v, 1, 1_000) },
  maxQueuedRequests: { valid: (v) => isInt(v, 0), plainlyValid: (v) => isInt(v, 0, 10_000) },
};

type Snapshot = Record<string, unknown>;
const snapshot = (engine: SessionEngine): Snapshot => Object.fromEntries(OPTION_NAMES.map((n) => [n, engine.getOption(n)]));

function assertCodedTypeError(error: unknown, code: string, what: string): void {
  assert.ok(error instanceof TypeError, `${what}: a TypeError, got ${String(error)}`);
  assert.equal((error as TypeError & { code?: unknown }).code, code, `${what}: code`);
}

/** The cookie the engine would send now, set and cleared, is one well-formed line. */
function assertCookieSerializes(engine: SessionEngine, clock: ManualClock): void {
  const secureOption = engine.getOption('cookieSecure');
  for (const requestIsSecure of [false, true]) {
    const base = {
      name: engine.getOption('cookieName'), domain: engine.getOption('cookieDomain'), path: engine.getOption('cookiePath'),
      sameSite: engine.getOption('cookieSameSite'), secure: secureOption === 'auto' ? requestIsSecure : secureOption,
    };
    const set: CookieDirective = { action: 'set', sessionId: '0f8e5a3c-6b1d-4c2a-9e7f-1a2b3c4d5e6f', expiresAtMs: clock.now() };
    let lines: string | string[] | undefined;
    assert.doesNotThrow(() => { lines = setCookieFor(engine, { cookie: () => set, nowMs: () => clock.now() }, requestIsSecure); }, `accepted cookie options must serialize: ${JSON.stringify(base)}`);
    const clearings = typeof lines === 'string' || lines === undefined ? [] : lines.slice(0, -1);
    const line = typeof lines === 'string' || lines === undefined ? lines : lines.at(-1);
    assertWellFormedSetCookie(line!, { ...base, value: set.sessionId, clear: false, expires: new Date(clock.now()).toUTCString() });
    for (const clearing of clearings) assertStaleClearing(clearing, base.name, line!);
    assert.doesNotThrow(() => { lines = setCookieFor(engine, { cookie: () => ({ action: 'clear' }), nowMs: () => clock.now() }, requestIsSecure); });
    assert.equal(typeof lines, 'string', 'a clearing response clears the current cookie only');
    assertWellFormedSetCookie(lines as unknown as string, { ...base, value: '', clear: true, expires: new Date(0).toUTCString() });
  }
}

test(`setOption applies a valid value or throws a coded TypeError and changes nothing (${FUZZ.direct} sequences)`, guardFor(FUZZ.direct, 2), () => {
  fc.assert(fc.property(fc.array(fc.tuple(nameArb, valueArb), { minLength: 1, maxLength: 12 }), (changes) => {
    const engine = new SessionEngine({ clock: new ManualClock() });
    const events: unknown[] = [];
    engine.on('option', (event) => events.push(event));
    for (const [name, value] of changes) {
      const before = snapshot(engine);
      const eventsBefore = events.length;
      let threw: unknown;
      try {
        engine.setOption(name as OptionName, value as never);
      } catch (error) {
        threw = error ?? new Error('threw a nullish value');
      }
      const known = typeof name === 'string' && (OPTION_NAMES as readonly string[]).includes(name);
      if (threw !== undefined) {
        assertCodedTypeError(threw, known ? 'ERR_SESSION_INVALID_OPTION' : 'ERR_SESSION_UNKNOWN_OPTION', `setOption(${show(name)})`);
        assert.deepEqual(snapshot(engine), before, 'a refused value changes nothing');
        assert.equal(events.length, eventsBefore, "no 'option' event for a refused value");
        if (known) {
          const sameSiteNoneInsecure = (name === 'cookieSameSite' && value === 'None' && before.cookieSecure === false)
            || (name === 'cookieSecure' && value === false && before.cookieSameSite === 'None');
          assert.ok(!DOMAIN[name as OptionName].plainlyValid(value) || sameSiteNoneInsecure, `an ordinary value must be accepted: ${show(name)} = ${show(value)}`);
        }
        continue;
      }
      assert.ok(known, `an unknown option name must be refused: ${show(name)}`);
      const option = name as OptionName;
      assert.ok(DOMAIN[option].valid(value), `only a valid value is applied: ${option} = ${show(value)}`);
      const expected = option === 'maxSessions' ? Math.min(value as number, before.maxConcurrentProcesses as number) : value;
      const after = snapshot(engine);
      assert.equal(after[option], option === 'maxSessions' ? expected : value, `${option} reads back what was set`);
      const others = (s: Snapshot): Snapshot => Object.fromEntries(Object.entries(s).filter(([k]) => k !== option && !(option === 'maxConcurrentProcesses' && k === 'maxSessions')));
      assert.deepEqual(others(after), others(before), 'setting one option changes no other');
      assert.deepEqual(events.slice(eventsBefore), [{ name: option, value }]);
    }
  }), params(FUZZ.direct));
});

test(`getOption refuses every name that is not an option with a coded TypeError (${FUZZ.direct} cases)`, guardFor(FUZZ.direct, 1), () => {
  const engine = new SessionEngine();
  fc.assert(fc.property(nameArb, (name) => {
    if (typeof name === 'string' && (OPTION_NAMES as readonly string[]).includes(name)) return;
    assert.throws(() => engine.getOption(name as OptionName), (error: unknown) => { assertCodedTypeError(error, 'ERR_SESSION_UNKNOWN_OPTION', 'getOption'); return true; });
  }), params(FUZZ.direct));
});

test(`the constructor takes a valid value or throws a coded TypeError (${FUZZ.direct} cases)`, guardFor(FUZZ.direct, 2), () => {
  fc.assert(fc.property(nameArb, valueArb, (name, value) => {
    if (typeof name !== 'string') return; // object keys are strings
    const known = (OPTION_NAMES as readonly string[]).includes(name);
    const constructionOnly = ['clock', 'locks', 'init', 'onClose'].includes(name);
    // The clock, hooks and lock manager are the application's objects: reading them may throw its own errors.
    if (constructionOnly && typeof value === 'object' && value !== null && hostile.has(value)) return;
    let engine: SessionEngine | undefined;
    try {
      engine = new SessionEngine({ [name]: value } as never);
    } catch (error) {
      assertCodedTypeError(error, known || constructionOnly ? 'ERR_SESSION_INVALID_OPTION' : 'ERR_SESSION_UNKNOWN_OPTION', `new SessionEngine({ ${name} })`);
      if (known && value !== undefined) assert.ok(!DOMAIN[name as OptionName].plainlyValid(value) || (name === 'cookieSameSite' && value === 'None'), `an ordinary value must be accepted: ${name}`);
      return;
    }
    assert.ok(known || constructionOnly, `an unknown key must be refused: ${name}`);
    if (known && value !== undefined) {
      assert.ok(DOMAIN[name as OptionName].valid(value), `only a valid value is taken: ${name}`);
      assert.equal(engine.getOption(name as OptionName), name === 'maxSessions' ? Math.min(value as number, 100) : value);
    }
  }), params(FUZZ.direct));
});

// ---- the 4D selectors -------------------------------------------------------------------------------

const SELECTORS = [
  Web_max_concurrent_processes, Web_legacy_session, Web_max_sessions, Web_inactive_session_timeout, Web_session_cookie_name,
  Web_inactive_process_timeout, Web_session_cookie_domain, Web_session_cookie_path, Web_session_enable_IP_address_validation, Web_scalable_session,
] as const;
const selectorArb: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 10, arbitrary: fc.constantFrom(...SELECTORS) },
  { weight: 1, arbitrary: fc.integer({ min: -1, max: 120 }) },
  { weight: 1, arbitrary: fc.constantFrom('71', 71.5, -71, NaN, null, undefined, 71n, Symbol('71')) },
);

/** What WEB GET OPTION must read after an accepted WEB SET OPTION (README's selector table). */
function readingAfter(selector: number, value: unknown, engine: SessionEngine): unknown {
  switch (selector) {
    case Web_max_concurrent_processes: return (value as number) || 100;
    case Web_max_sessions: return Math.min((value as number) || 100, engine.getOption('maxConcurrentProcesses'));
    case Web_inactive_session_timeout: case Web_inactive_process_timeout: return (value as number) || 480;
    case Web_session_cookie_name: return (value as string) || '4DSID';
    case Web_session_cookie_domain: return (value as string).replace(/^\/?\*/, '');
    case Web_session_cookie_path: return (value as string) || '/';
    default: return value === 1 ? 1 : 0; // 70, 83, 90: 0 or 1 (-0 reads as 0)
  }
}

/** Values a 4D developer would plainly expect to work. */
function plainly4D(selector: number, value: unknown): boolean {
  switch (selector) {
    // 4D's range for 18: 10 to 32 000 processes, or 0 (the default).
    case Web_max_concurrent_processes: return value === 0 || isInt(value, 10, 32_000);
    case Web_max_sessions: return isInt(value, 0, 100_000);
    case Web_inactive_session_timeout: case Web_inactive_process_timeout: return isInt(value, 0, 30 * 24 * 60);
    case Web_session_cookie_name: return value === '' || (typeof value === 'string' && value.length <= 64 && TOKEN.test(value));
    case Web_session_cookie_domain: return value === '' || value === 'example.com' || value === '/*.4d.fr' || value === '.example.com';
    case Web_session_cookie_path: return value === '' || (typeof value === 'string' && /^\/[A-Za-z0-9/_.-]{0,60}$/.test(value));
    default: return value === 0 || value === 1;
  }
}

test(`WEB SET OPTION applies a valid value (read back in 4D units, cookie well-formed) or throws a coded TypeError and changes nothing (${FUZZ.direct} sequences)`, guardFor(FUZZ.direct, 2), () => {
  fc.assert(fc.property(fc.array(fc.tuple(selectorArb, valueArb), { minLength: 1, maxLength: 10 }), (changes) => {
    const clock = new ManualClock();
    const engine = new SessionEngine({ clock });
    const { WEB_SET_OPTION, WEB_GET_OPTION } = use4D(engine);
    for (const [selector, value] of changes) {
      const before = snapshot(engine);
      const known = (SELECTORS as readonly unknown[]).includes(selector);
      let threw: unknown;
      try {
        WEB_SET_OPTION(selector as number, value as number);
      } catch (error) {
        threw = error ?? new Error('threw a nullish value');
      }
      if (threw !== undefined) {
        assertCodedTypeError(threw, known ? 'ERR_SESSION_INVALID_OPTION' : 'ERR_SESSION_UNKNOWN_OPTION', `WEB SET OPTION(${show(selector)})`);
        assert.deepEqual(snapshot(engine), before, 'a refused value changes nothing');
        if (known) assert.ok(!plainly4D(selector as number, value), `an ordinary value must be accepted: selector ${show(selector)} = ${show(value)}`);
        if (!known) assert.throws(() => WEB_GET_OPTION(selector as number), (error: unknown) => { assertCodedTypeError(error, 'ERR_SESSION_UNKNOWN_OPTION', 'WEB GET OPTION'); return true; });
        continue;
      }
      assert.ok(known, `an unknown selector must be refused: ${show(selector)}`);
      assert.equal(WEB_GET_OPTION(selector as number), readingAfter(selector as number, value, engine), `selector ${show(selector)} reads back what was set`);
      assertCookieSerializes(engine, clock);
    }
  }), params(FUZZ.direct));
});
