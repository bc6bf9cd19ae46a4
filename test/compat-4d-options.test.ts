// 4D's WEB SET OPTION / WEB GET OPTION through use4D(engine): the selector constants, minutes, 0 and ""
// restoring defaults, the clamp of Web max sessions, the mode selectors, and the TypeErrors of bad values
// and unknown selectors. The commands (WEB LEGACY CLOSE SESSION and the reads) are in compat-4d.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_OPTIONS } from '../src/index.js';
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
import { isOptionError, makeEngine, MINUTE } from './compat-4d-support.js';

test('the selector constants have 4D\'s values', () => {
  assert.deepEqual(
    [
      Web_max_concurrent_processes, Web_legacy_session, Web_max_sessions, Web_inactive_session_timeout, Web_session_cookie_name,
      Web_inactive_process_timeout, Web_session_cookie_domain, Web_session_cookie_path, Web_session_enable_IP_address_validation, Web_scalable_session,
    ],
    [18, 70, 71, 72, 73, 78, 81, 82, 83, 90],
  );
});

test('the timeout selectors take and return minutes, stored as milliseconds; 0 restores the 480-minute default', async () => {
  const engine = makeEngine();
  try {
    const { WEB_SET_OPTION, WEB_GET_OPTION } = use4D(engine);
    assert.equal(WEB_GET_OPTION(Web_inactive_process_timeout), 480);
    assert.equal(WEB_GET_OPTION(Web_inactive_session_timeout), 480);

    WEB_SET_OPTION(Web_inactive_process_timeout, 60);
    assert.equal(engine.getOption('inactiveProcessTimeoutMs'), 3_600_000);
    assert.equal(WEB_GET_OPTION(Web_inactive_process_timeout), 60);

    WEB_SET_OPTION(Web_inactive_session_timeout, 1_440);
    assert.equal(engine.getOption('inactiveSessionTimeoutMs'), 86_400_000);
    assert.equal(WEB_GET_OPTION(Web_inactive_session_timeout), 1_440);

    engine.setOption('inactiveProcessTimeoutMs', 90 * MINUTE);
    assert.equal(WEB_GET_OPTION(Web_inactive_process_timeout), 90, 'ms set by name read back in minutes');

    WEB_SET_OPTION(Web_inactive_process_timeout, 0);
    WEB_SET_OPTION(Web_inactive_session_timeout, 0);
    assert.equal(engine.getOption('inactiveProcessTimeoutMs'), DEFAULT_OPTIONS.inactiveProcessTimeoutMs);
    assert.equal(engine.getOption('inactiveSessionTimeoutMs'), DEFAULT_OPTIONS.inactiveSessionTimeoutMs);
    assert.equal(WEB_GET_OPTION(Web_inactive_process_timeout), 480);
    assert.equal(WEB_GET_OPTION(Web_inactive_session_timeout), 480);

    // 366 days is the longest; beyond it the error speaks of minutes, the unit the caller gave.
    WEB_SET_OPTION(Web_inactive_process_timeout, 527_040);
    assert.equal(WEB_GET_OPTION(Web_inactive_process_timeout), 527_040);
    for (const selector of [Web_inactive_process_timeout, Web_inactive_session_timeout]) {
      assert.throws(() => WEB_SET_OPTION(selector, 527_041), (error: unknown) => error instanceof TypeError
        && (error as { code?: string }).code === 'ERR_SESSION_INVALID_OPTION'
        && error.message.includes(`selector ${selector} takes 1 to 527040 (0 restores the default), got 527041`), `selector ${selector}`);
    }
    assert.equal(WEB_GET_OPTION(Web_inactive_process_timeout), 527_040, 'unchanged by the refused value');
  } finally {
    await engine.stop();
  }
});

test('Web max concurrent processes and Web max sessions set the limits, 0 restores 100, and max sessions reads back clamped to max concurrent processes', async () => {
  const engine = makeEngine();
  try {
    const { WEB_SET_OPTION, WEB_GET_OPTION } = use4D(engine);
    assert.equal(WEB_GET_OPTION(Web_max_concurrent_processes), 100);
    assert.equal(WEB_GET_OPTION(Web_max_sessions), 100);

    WEB_SET_OPTION(Web_max_sessions, 40);
    assert.equal(engine.getOption('maxSessions'), 40);
    assert.equal(WEB_GET_OPTION(Web_max_sessions), 40);

    WEB_SET_OPTION(Web_max_concurrent_processes, 20);
    assert.equal(engine.getOption('maxConcurrentProcesses'), 20);
    assert.equal(WEB_GET_OPTION(Web_max_concurrent_processes), 20);
    assert.equal(WEB_GET_OPTION(Web_max_sessions), 20, 'clamped to max concurrent processes');

    WEB_SET_OPTION(Web_max_sessions, 500);
    assert.equal(WEB_GET_OPTION(Web_max_sessions), 20, 'a larger value still reads back clamped');

    WEB_SET_OPTION(Web_max_concurrent_processes, 0);
    assert.equal(WEB_GET_OPTION(Web_max_concurrent_processes), 100);
    assert.equal(WEB_GET_OPTION(Web_max_sessions), 100, '500 clamped to the restored 100');

    // Selector 18 takes what maxConcurrentProcesses takes by name, 1 to 10 000 000 (4D documents 10 to
    // 32 000), so that any value read back can be written back (0 restores the default); beyond, a TypeError.
    for (const n of [1, 9, 10, 32_000, 32_001, 10_000_000]) {
      WEB_SET_OPTION(Web_max_concurrent_processes, n);
      assert.equal(WEB_GET_OPTION(Web_max_concurrent_processes), n);
    }
    assert.throws(() => WEB_SET_OPTION(Web_max_concurrent_processes, 10_000_001), (error: unknown) => error instanceof TypeError
      && (error as { code?: string }).code === 'ERR_SESSION_INVALID_OPTION' && error.message.includes('selector 18 takes 1 to 10000000'));
    assert.equal(WEB_GET_OPTION(Web_max_concurrent_processes), 10_000_000, 'unchanged by the refused value');
    WEB_SET_OPTION(Web_max_concurrent_processes, 0);

    WEB_SET_OPTION(Web_max_sessions, 30);
    WEB_SET_OPTION(Web_max_sessions, 0);
    assert.equal(WEB_GET_OPTION(Web_max_sessions), 100);
    assert.equal(engine.getOption('maxSessions'), DEFAULT_OPTIONS.maxSessions);
  } finally {
    await engine.stop();
  }
});

test('the cookie name and path selectors set the options, and "" restores the default', async () => {
  const engine = makeEngine();
  try {
    const { WEB_SET_OPTION, WEB_GET_OPTION } = use4D(engine);
    assert.equal(WEB_GET_OPTION(Web_session_cookie_name), '4DSID');
    assert.equal(WEB_GET_OPTION(Web_session_cookie_path), '/');

    WEB_SET_OPTION(Web_session_cookie_name, '4DSID_MyApp');
    WEB_SET_OPTION(Web_session_cookie_path, '/4DACTION');
    assert.equal(engine.getOption('cookieName'), '4DSID_MyApp');
    assert.equal(engine.getOption('cookiePath'), '/4DACTION');
    assert.equal(WEB_GET_OPTION(Web_session_cookie_name), '4DSID_MyApp');
    assert.equal(WEB_GET_OPTION(Web_session_cookie_path), '/4DACTION');

    WEB_SET_OPTION(Web_session_cookie_name, '');
    WEB_SET_OPTION(Web_session_cookie_path, '');
    assert.equal(engine.getOption('cookieName'), '4DSID');
    assert.equal(engine.getOption('cookiePath'), '/');
  } finally {
    await engine.stop();
  }
});

test('the cookie domain selector turns 4D\'s "/*.4d.fr" into ".4d.fr", and "" restores a host-only cookie', async () => {
  const engine = makeEngine();
  try {
    const { WEB_SET_OPTION, WEB_GET_OPTION } = use4D(engine);
    assert.equal(WEB_GET_OPTION(Web_session_cookie_domain), '');

    WEB_SET_OPTION(Web_session_cookie_domain, '/*.4d.fr');
    assert.equal(engine.getOption('cookieDomain'), '.4d.fr');
    assert.equal(WEB_GET_OPTION(Web_session_cookie_domain), '.4d.fr');

    WEB_SET_OPTION(Web_session_cookie_domain, 'example.com');
    assert.equal(engine.getOption('cookieDomain'), 'example.com');

    WEB_SET_OPTION(Web_session_cookie_domain, '');
    assert.equal(engine.getOption('cookieDomain'), undefined);
    assert.equal(WEB_GET_OPTION(Web_session_cookie_domain), '');
  } finally {
    await engine.stop();
  }
});

test('the IP validation selector takes 0 or 1', async () => {
  const engine = makeEngine();
  try {
    const { WEB_SET_OPTION, WEB_GET_OPTION } = use4D(engine);
    assert.equal(WEB_GET_OPTION(Web_session_enable_IP_address_validation), 1);
    WEB_SET_OPTION(Web_session_enable_IP_address_validation, 0);
    assert.equal(engine.getOption('ipValidation'), false);
    assert.equal(WEB_GET_OPTION(Web_session_enable_IP_address_validation), 0);
    WEB_SET_OPTION(Web_session_enable_IP_address_validation, 1);
    assert.equal(engine.getOption('ipValidation'), true);
    assert.equal(WEB_GET_OPTION(Web_session_enable_IP_address_validation), 1);
    assert.throws(() => WEB_SET_OPTION(Web_session_enable_IP_address_validation, 2), isOptionError('ERR_SESSION_INVALID_OPTION'));
    assert.equal(engine.getOption('ipValidation'), true);
  } finally {
    await engine.stop();
  }
});

test('the mode selectors 70 and 90: setting one clears the other, turning the current one off means no sessions', async () => {
  const engine = makeEngine();
  try {
    const { WEB_SET_OPTION, WEB_GET_OPTION } = use4D(engine);
    const modes = (): [number | string, number | string, string] => [WEB_GET_OPTION(Web_legacy_session), WEB_GET_OPTION(Web_scalable_session), engine.getOption('mode')];
    assert.deepEqual(modes(), [1, 0, 'legacy']);

    WEB_SET_OPTION(Web_scalable_session, 1);
    assert.deepEqual(modes(), [0, 1, 'scalable']);

    WEB_SET_OPTION(Web_legacy_session, 0); // not the current mode: nothing changes
    assert.deepEqual(modes(), [0, 1, 'scalable']);

    WEB_SET_OPTION(Web_legacy_session, 1);
    assert.deepEqual(modes(), [1, 0, 'legacy']);

    WEB_SET_OPTION(Web_scalable_session, 0); // not the current mode
    assert.deepEqual(modes(), [1, 0, 'legacy']);

    WEB_SET_OPTION(Web_legacy_session, 0);
    assert.deepEqual(modes(), [0, 0, 'none']);

    WEB_SET_OPTION(Web_scalable_session, 1);
    WEB_SET_OPTION(Web_scalable_session, 0);
    assert.deepEqual(modes(), [0, 0, 'none']);

    assert.throws(() => WEB_SET_OPTION(Web_legacy_session, 2), isOptionError('ERR_SESSION_INVALID_OPTION'));
    assert.throws(() => WEB_SET_OPTION(Web_scalable_session, -1), isOptionError('ERR_SESSION_INVALID_OPTION'));
    assert.equal(engine.getOption('mode'), 'none');
  } finally {
    await engine.stop();
  }
});

test('negative, non-integer and wrong-type values throw TypeError ERR_SESSION_INVALID_OPTION and change nothing', async () => {
  const engine = makeEngine();
  try {
    const { WEB_SET_OPTION } = use4D(engine);
    const snapshot = (): unknown[] => (['mode', 'maxSessions', 'maxConcurrentProcesses', 'inactiveProcessTimeoutMs', 'inactiveSessionTimeoutMs', 'cookieName', 'cookieDomain', 'cookiePath', 'ipValidation'] as const).map((n) => engine.getOption(n));
    const before = snapshot();
    const longintSelectors = [Web_max_concurrent_processes, Web_legacy_session, Web_max_sessions, Web_inactive_session_timeout, Web_inactive_process_timeout, Web_session_enable_IP_address_validation, Web_scalable_session];
    const textSelectors = [Web_session_cookie_name, Web_session_cookie_domain, Web_session_cookie_path];
    const badLongints: unknown[] = [-1, -60, 1.5, 0.1, Number.NaN, Number.POSITIVE_INFINITY, '60', '', null, undefined, true, {}, [1]];
    const badTexts: unknown[] = [0, 5, null, undefined, true, {}, ['/']];

    for (const selector of longintSelectors) {
      for (const value of badLongints) {
        assert.throws(() => WEB_SET_OPTION(selector, value as number), isOptionError('ERR_SESSION_INVALID_OPTION'), `selector ${selector} accepted ${String(value)}`);
      }
    }
    for (const selector of textSelectors) {
      for (const value of badTexts) {
        assert.throws(() => WEB_SET_OPTION(selector, value as string), isOptionError('ERR_SESSION_INVALID_OPTION'), `selector ${selector} accepted ${String(value)}`);
      }
    }
    // Well-typed but unusable texts, and minutes beyond what a timer can hold, are refused by the engine's validation.
    assert.throws(() => WEB_SET_OPTION(Web_session_cookie_name, 'bad name;'), isOptionError('ERR_SESSION_INVALID_OPTION'));
    assert.throws(() => WEB_SET_OPTION(Web_session_cookie_path, 'no-slash'), isOptionError('ERR_SESSION_INVALID_OPTION'));
    assert.throws(() => WEB_SET_OPTION(Web_session_cookie_domain, 'a b;c'), isOptionError('ERR_SESSION_INVALID_OPTION'));
    assert.throws(() => WEB_SET_OPTION(Web_inactive_process_timeout, 1_000_000_000), isOptionError('ERR_SESSION_INVALID_OPTION'));
    assert.deepEqual(snapshot(), before);
  } finally {
    await engine.stop();
  }
});

test('unknown selectors throw TypeError ERR_SESSION_UNKNOWN_OPTION for both WEB SET OPTION and WEB GET OPTION', async () => {
  const engine = makeEngine();
  try {
    const { WEB_SET_OPTION, WEB_GET_OPTION } = use4D(engine);
    for (const selector of [0, 1, 17, 19, 74, 84, 91, 999, -72, 72.5, Number.NaN, '72', null]) {
      assert.throws(() => WEB_SET_OPTION(selector as number, 1), isOptionError('ERR_SESSION_UNKNOWN_OPTION'), `set ${String(selector)}`);
      assert.throws(() => WEB_GET_OPTION(selector as number), isOptionError('ERR_SESSION_UNKNOWN_OPTION'), `get ${String(selector)}`);
    }
  } finally {
    await engine.stop();
  }
});
