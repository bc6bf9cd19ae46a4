// WEB GET OPTION → WEB SET OPTION of the same selector, whatever the engine holds (options set by name
// within what engine.setOption accepts): the write-back never throws and every selector reads as before.
// 4D code that saves a setting and restores it later does exactly this.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ManualClock, SessionEngine, type OptionName } from '../src/index.js';
import { MAX_DURATION_MS } from '../src/options.js';
import {
  use4D,
  Web_inactive_process_timeout,
  Web_inactive_session_timeout,
  Web_legacy_session,
  Web_max_concurrent_processes,
  Web_max_sessions,
  Web_scalable_session,
  Web_session_cookie_domain,
  Web_session_cookie_name,
  Web_session_cookie_path,
  Web_session_enable_IP_address_validation,
} from '../src/compat-4d.js';
import { FUZZ, guardFor, params } from './fuzz-support.js';

const SELECTORS = [
  Web_max_concurrent_processes, Web_legacy_session, Web_max_sessions, Web_inactive_session_timeout, Web_session_cookie_name,
  Web_inactive_process_timeout, Web_session_cookie_domain, Web_session_cookie_path, Web_session_enable_IP_address_validation, Web_scalable_session,
] as const;

const LABEL = '[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?';
/** A value engine.setOption accepts for each option a selector reads, edges of the ranges included. */
const byName: { [K in OptionName]?: fc.Arbitrary<unknown> } = {
  mode: fc.constantFrom('legacy', 'scalable', 'none'),
  maxSessions: fc.oneof(fc.integer({ min: 1, max: 200 }), fc.constantFrom(1, 10_000_000), fc.integer({ min: 1, max: 10_000_000 })),
  maxConcurrentProcesses: fc.oneof(fc.integer({ min: 1, max: 12 }), fc.constantFrom(1, 9, 10, 32_000, 32_001, 10_000_000), fc.integer({ min: 1, max: 10_000_000 })),
  inactiveProcessTimeoutMs: fc.oneof(fc.constantFrom(1, 59_999, 60_000, 60_001, MAX_DURATION_MS), fc.integer({ min: 1, max: MAX_DURATION_MS })),
  inactiveSessionTimeoutMs: fc.oneof(fc.constantFrom(1, 59_999, 60_000, 60_001, MAX_DURATION_MS), fc.integer({ min: 1, max: MAX_DURATION_MS })),
  cookieName: fc.stringMatching(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,20}$/),
  cookieDomain: fc.oneof(fc.constant(undefined), fc.stringMatching(new RegExp(`^\\.?${LABEL}(?:\\.${LABEL}){0,2}$`))),
  cookiePath: fc.stringMatching(/^\/[\x20-\x3A\x3D-\x7E]{0,20}$/),
  ipValidation: fc.boolean(),
};
const settings = fc.array(fc.oneof(...Object.entries(byName).map(([name, value]) => fc.tuple(fc.constant(name as OptionName), value))), { maxLength: 8 });

test(`WEB SET OPTION takes back what WEB GET OPTION read, for every selector, whatever was set by name (${FUZZ.direct} cases)`, guardFor(FUZZ.direct, 2), () => {
  fc.assert(fc.property(settings, fc.constantFrom(...SELECTORS), (changes, selector) => {
    const engine = new SessionEngine({ clock: new ManualClock() });
    for (const [name, value] of changes) engine.setOption(name, value as never);
    const { WEB_GET_OPTION, WEB_SET_OPTION } = use4D(engine);
    const readings = () => SELECTORS.map((s) => WEB_GET_OPTION(s));
    const before = readings();
    const value = WEB_GET_OPTION(selector);
    assert.doesNotThrow(() => WEB_SET_OPTION(selector, value), `selector ${selector}: the value it read, ${JSON.stringify(value)}, is taken back`);
    assert.deepEqual(readings(), before, `selector ${selector}: every selector reads as before`);
  }), params(FUZZ.direct));
});

test('Web max concurrent processes set by name outside 4D\'s 10 to 32 000 reads back and is written back unchanged', async () => {
  for (const n of [1, 9, 32_001, 10_000_000]) {
    const engine = new SessionEngine({ clock: new ManualClock(), maxConcurrentProcesses: n });
    try {
      const { WEB_GET_OPTION, WEB_SET_OPTION } = use4D(engine);
      assert.equal(WEB_GET_OPTION(Web_max_concurrent_processes), n);
      WEB_SET_OPTION(Web_max_concurrent_processes, WEB_GET_OPTION(Web_max_concurrent_processes));
      assert.equal(engine.getOption('maxConcurrentProcesses'), n);
    } finally {
      await engine.stop();
    }
  }
});
