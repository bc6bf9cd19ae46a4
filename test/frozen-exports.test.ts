// What users did with ERROR_CODES and systemClock still compiles and runs now that both are frozen.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ERROR_CODES, ManualClock, SessionEngine, systemClock, type Clock, type SessionErrorCode } from '../src/index.js';

test('ERROR_CODES: keys, entries, lookups by code and a widened table', () => {
  const codes = Object.keys(ERROR_CODES) as SessionErrorCode[];
  assert.ok(codes.includes('ERR_SESSION_LIMIT'));
  const table: Record<string, { httpStatus: number; message: string }> = ERROR_CODES;
  assert.equal(table.ERR_SESSION_LIMIT!.httpStatus, 503);
  const statusOf = (code: SessionErrorCode): number => ERROR_CODES[code].httpStatus;
  assert.equal(statusOf('ERR_SESSION_LIMIT'), 503);
  const copy = { ...ERROR_CODES.ERR_SESSION_LIMIT, httpStatus: 429 };
  assert.equal(copy.httpStatus, 429);
  assert.equal(Object.entries(ERROR_CODES).length, codes.length);
});

test('systemClock spread into a custom clock, and used as an engine\'s clock', async () => {
  let offset = 0;
  const skewed: Clock = { ...systemClock, now: () => Date.now() + offset };
  offset = 1_000;
  assert.ok(skewed.now() - Date.now() >= 999);
  const engine = new SessionEngine({ clock: { ...systemClock, now: () => Date.now() } });
  const lease = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
  lease.release();
  await engine.stop();
  const manual = new ManualClock();
  assert.equal(typeof manual.now(), 'number');
});
