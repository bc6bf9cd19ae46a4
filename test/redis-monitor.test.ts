// The MONITOR reader the security tests rely on (test/redis-monitor.ts) gives back each argument as
// Redis got it: were its unescaping wrong, "no command carried a client-made value" would hold vacuously.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { monitorArgs } from './redis-monitor.js';
import { redisForTest, watchCommands } from './redis-support.js';
import { eventually } from './helpers.js';

test('monitorArgs unescapes what Redis quotes: backslash, quote, CR, LF, tab, bell, backspace, \\xHH', () => {
  assert.deepEqual(monitorArgs(String.raw`+1.5 [0 127.0.0.1:1] "SET" "a\\b\"c" "\r\n\t\a\b" "\x00\x7fz"`), ['SET', 'a\\b"c', '\r\n\t\x07\b', '\x00\x7fz']);
  assert.deepEqual(monitorArgs('+1.5 [0 unix:/tmp/r.sock] "PING"'), ['PING']);
});

test('watchCommands sees a value with CR LF, quotes, markup and NUL exactly as a client sent it', { timeout: 10_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const { seen, stop } = await watchCommands(r);
  try {
    const hostile = '\r\nINJECTED "<img src=x onerror=1>"\x00\\end';
    await r.redis.set(`${r.prefix}monitored`, hostile);
    assert.ok(await eventually(() => seen.includes(`set ${r.prefix}monitored ${hostile}`), 5_000), `seen: ${JSON.stringify(seen.slice(-3))}`);
  } finally {
    stop();
  }
});
