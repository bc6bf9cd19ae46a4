// A cookie path changed at run time, in real headless Chromium (Debian's, through playwright-core): the
// browser keeps the cookie under the earlier path and sends it first on that path. Without the clearing
// of the earlier cookie, once the session it names has closed, every request there got a new session.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { ManualClock, SessionEngine } from '../src/index.js';
import { CHROMIUM, CHROMIUM_ARGS, chromiumOrSkip } from './browser-support.js';
import { startServer } from './helpers.js';

test('browser: after cookiePath changes from /app to /, a browser keeps one session on /app once its old session closed (the cookie under /app is cleared, not left to shadow the new one)', async (t) => {
  if (!chromiumOrSkip(t)) return;
  const engine = new SessionEngine<{ visits: number }>({ clock: new ManualClock(Date.now()), cookiePath: '/app', init: () => ({ visits: 0 }) });
  const server = await startServer(engine, (_req, res, proc) => {
    proc.vars.visits++;
    res.setHeader('content-type', 'text/plain');
    res.end(`${proc.sessionId} ${proc.vars.visits}`);
  }, { sessionless: (req, res) => req.url === '/favicon.ico' && (res.writeHead(404).end(), true) }); // outside /app the browser sends no cookie
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  try {
    const page = await (await browser.newContext()).newPage();
    const visit = async (): Promise<{ id: string; visits: number }> => {
      const response = await page.goto(`${server.url}/app/page`);
      assert.ok(response);
      const [id = '', visits = ''] = (await response.text()).split(' ');
      return { id, visits: Number(visits) };
    };
    const cookiesOnApp = async (): Promise<string[]> =>
      (await page.context().cookies(`${server.url}/app/page`)).filter((c) => c.name === '4DSID').map((c) => `${c.path}=${c.value}`).sort();

    const first = await visit();
    assert.deepEqual(await cookiesOnApp(), [`/app=${first.id}`]);

    engine.setOption('cookiePath', '/');
    const second = await visit();
    assert.equal(second.id, first.id, 'the live session is kept across the change');
    assert.equal(second.visits, 2);
    assert.deepEqual(await cookiesOnApp(), [`/=${first.id}`], 'the cookie under /app is gone, the one under / holds the session');

    assert.equal(await engine.closeSession(first.id), true);
    const third = await visit();
    assert.notEqual(third.id, first.id, 'a closed session is never resurrected');
    const fourth = await visit();
    const fifth = await visit();
    assert.equal(fourth.id, third.id, 'the new session is kept: no stale cookie sent ahead of it');
    assert.equal(fifth.id, third.id);
    assert.equal(fifth.visits, 3);
    assert.deepEqual(await cookiesOnApp(), [`/=${third.id}`]);
    assert.equal(engine.stats().created, 2);
  } finally {
    await browser.close();
    await engine.stop();
    await server.close();
  }
});
