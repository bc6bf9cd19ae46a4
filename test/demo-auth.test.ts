// The demo's admin token check on its own: per-address throttling with its window, on an injected clock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AdminAuth, FAILURE_WINDOW_MS, MAX_TOKEN_FAILURES } from '../demo/auth.js';

test('demo admin auth: an address that used up its tries is refused until the window ends, other addresses are not', () => {
  let nowMs = 0;
  const auth = new AdminAuth('right-token-123', () => nowMs);
  for (let i = 0; i < MAX_TOKEN_FAILURES; i++) assert.equal(auth.tokenMatches('wrong', '10.0.0.1'), false);
  assert.equal(auth.tokenMatches('right-token-123', '10.0.0.1'), 'throttled');
  assert.equal(auth.tokenMatches('right-token-123', '10.0.0.2'), true, 'another address is not held back');
  nowMs += FAILURE_WINDOW_MS - 1;
  assert.equal(auth.tokenMatches('right-token-123', '10.0.0.1'), 'throttled');
  nowMs += 1;
  assert.equal(auth.tokenMatches('right-token-123', '10.0.0.1'), true, 'the window is over');
});
