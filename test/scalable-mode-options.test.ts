// 4D ignores four legacy options in scalable mode (spec §6, selector 90: Web inactive process timeout,
// Web max concurrent processes, Web session cookie name, Web inactive session timeout): its scalable
// sessions have a cookie, a timeout and a process pool of their own. The engine has no such second set
// (DESIGN.md: in 'scalable' mode sessions live and expire), so it keeps applying these four; README's
// Modes says so. Memory store; mode-change.test.ts runs the mode rules on both stores.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type CloseReason } from '../src/index.js';
import { engineWithErrors, request, sessionIdOf, settle } from './helpers.js';
import { MINUTE, theCookie, withServer } from './http-support.js';

test("mode 'scalable': the cookie has the name cookieName gives and lives inactiveSessionTimeoutMs from each request, while sessionExpiration() reads null as 4D's does there", async () => {
  const clock = new ManualClock();
  const { engine } = engineWithErrors({ clock, mode: 'scalable', cookieName: 'SHOPSID', inactiveSessionTimeoutMs: 10 * MINUTE });
  await withServer(engine, (_req, res) => res.end('ok'), async (server) => {
    const first = await request(server.url);
    const cookie = theCookie(first, 'SHOPSID');
    assert.equal(new Date(String(cookie.attrs.get('expires'))).getTime(), Math.floor((clock.now() + 10 * MINUTE) / 1000) * 1000);
    const id = sessionIdOf(first, 'SHOPSID');
    assert.ok(id !== undefined);
    assert.equal(sessionIdOf(await request(server.url, { cookie: `SHOPSID=${id}` }), 'SHOPSID'), id, 'the session is found by that cookie');
    assert.equal(engine.sessionExpiration(id), null);
  });
});

test("mode 'scalable': maxConcurrentProcesses still bounds the processes (and maxSessions, clamped to it), and inactiveProcessTimeoutMs still times idle sessions out", async () => {
  const clock = new ManualClock();
  const closes: CloseReason[] = [];
  const { engine } = engineWithErrors({ clock, mode: 'scalable', maxConcurrentProcesses: 1, inactiveProcessTimeoutMs: MINUTE });
  engine.on('close', (event) => closes.push(event.reason));
  try {
    assert.equal(engine.getOption('maxSessions'), 1);
    const busy = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
    await assert.rejects(engine.acquire({ sessionId: undefined, ip: '127.0.0.1' }), (error: { code?: string }) => error.code === 'ERR_SESSION_LIMIT' || error.code === 'ERR_SESSION_PROCESS_LIMIT');
    assert.throws(() => busy.proc.spawn('task', async () => {}), { code: 'ERR_SESSION_PROCESS_LIMIT' });
    busy.release();
    clock.advance(MINUTE);
    await settle();
    assert.deepEqual(closes, ['timeout']);
    assert.deepEqual(engine.sessions(), []);
  } finally {
    await engine.stop();
  }
});
