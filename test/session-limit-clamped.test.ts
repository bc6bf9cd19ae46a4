// maxSessions reads back clamped to maxConcurrentProcesses (README, selector 71), and the cap a new
// session meets is that clamped value: with every session busy at it, the newcomer is refused as the
// session limit (ERR_SESSION_LIMIT, "maxSessions reached and every session busy"), counted there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { engineWithErrors } from './helpers.js';
import { keepLoopAlive, leaseTracker } from './engine-harness.js';

const IP = '203.0.113.17';
const { open, shutdown } = leaseTracker(IP);

keepLoopAlive();

test('maxSessions above maxConcurrentProcesses: the clamped cap with every session busy refuses a newcomer with ERR_SESSION_LIMIT', { timeout: 5_000 }, async () => {
  const { engine } = engineWithErrors({ maxSessions: 100, maxConcurrentProcesses: 10 });
  try {
    assert.equal(engine.getOption('maxSessions'), 10, 'reads back clamped');
    for (let i = 0; i < 10; i++) await open(engine); // ten busy sessions
    await assert.rejects(open(engine), { code: 'ERR_SESSION_LIMIT', httpStatus: 503 });
    assert.equal(engine.stats().rejected.sessionLimit, 1);
    assert.equal(engine.stats().rejected.processLimit, 0);
  } finally {
    await shutdown(engine);
  }
});
