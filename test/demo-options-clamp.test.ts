// The admin options form takes Max sessions up to 10,000,000, but the engine reads maxSessions clamped
// to maxConcurrentProcesses (100 in the demo, not on the form): "Options applied." must not hide that.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ADMIN_TOKEN, Client, startTestDemo, testId } from './demo-client.js';

test('admin options: a Max sessions above what the engine can apply is refused with a message, not silently lowered', { timeout: 30_000 }, async () => {
  const demo = await startTestDemo();
  try {
    const admin = new Client(demo.url, { authorization: `Bearer ${ADMIN_TOKEN}` });
    const answer = await admin.post('/admin/options', { maxSessions: '500', inactiveProcessTimeout: '20', inactiveSessionTimeout: '60', mode: 'legacy' });
    const applied = testId(answer.body, 'flash') === 'Options applied.';
    if (applied) assert.equal(demo.engine.getOption('maxSessions'), 500, '"Options applied." but Max sessions is not 500');
    else {
      assert.equal(answer.status, 400);
      assert.match(testId(answer.body, 'error') ?? '', /Max sessions/);
      assert.equal(demo.engine.getOption('maxSessions'), 50, 'nothing applied');
    }
  } finally {
    await demo.stop();
  }
});
