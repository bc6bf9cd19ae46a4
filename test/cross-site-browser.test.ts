// In real Chromium: a link from another site (127.0.0.2 is another site than 127.0.0.1) arrives
// without the SameSite=Strict session cookie. Before, its answer made a new session and its Set-Cookie
// replaced the one the browser held: any site could sign the user out. Now the arrival runs in a
// throw-away process without a cookie, and the user is still signed in on the next page.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { chromium } from 'playwright-core';
import { SessionEngine } from '../src/index.js';
import { createServer } from '../src/adapters/node/index.js';
import { CHROMIUM, CHROMIUM_ARGS, chromiumOrSkip } from './browser-support.js';

test('browser: following a link from another site keeps the signed-in session (SameSite=Strict): the arrival gets no cookie, the next page is still signed in', { timeout: 60_000 }, async (t) => {
  if (!chromiumOrSkip(t)) return;
  const engine = new SessionEngine<{ user: string | null }>({ init: () => ({ user: null }) });
  const app = createServer(engine, (req, res, proc) => {
    if (req.url === '/login') proc.vars.user = 'alice';
    res.setHeader('content-type', 'text/plain');
    res.end(`user=${proc.vars.user ?? 'none'}`);
  });
  app.listen(0, '127.0.0.1');
  await once(app, 'listening');
  const appUrl = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
  const otherSite = http.createServer((_req, res) => {
    res.setHeader('content-type', 'text/html');
    res.end(`<a id="go" href="${appUrl}/whoami">the app</a>`);
  });
  otherSite.listen(0, '127.0.0.2');
  await once(otherSite, 'listening');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  try {
    const page = await (await browser.newContext()).newPage();
    const body = async (): Promise<string> => (await page.textContent('body'))?.trim() ?? '';
    await page.goto(`${appUrl}/login`);
    assert.equal(await body(), 'user=alice');
    const signedIn = (await page.context().cookies()).find((c) => c.name === '4DSID')?.value;
    assert.ok(signedIn);

    await page.goto(`http://127.0.0.2:${(otherSite.address() as AddressInfo).port}/`);
    await Promise.all([page.waitForURL(`${appUrl}/whoami`), page.click('#go')]);
    assert.equal(await body(), 'user=none', 'the arrival itself runs without the session (the browser kept the cookie back)');
    assert.equal((await page.context().cookies()).find((c) => c.name === '4DSID')?.value, signedIn, 'the session cookie was not replaced');

    await page.goto(`${appUrl}/whoami`);
    assert.equal(await body(), 'user=alice', 'still signed in');
    assert.equal(engine.sessions().length, 1, 'no session was made for the arrival');
  } finally {
    await browser.close();
    await engine.stop();
    app.close();
    otherSite.close();
  }
});
