// The demo in real headless Chromium (Debian's /usr/bin/chromium through playwright-core, never a
// downloaded browser): two users and an admin, each in their own browser context.
// Screenshots go to a temporary directory, or to docs/ with UPDATE_SCREENSHOTS=1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { ADMIN_TOKEN, startTestDemo } from './demo-client.js';
import { CHROMIUM, CHROMIUM_ARGS as ARGS, chromiumOrSkip } from './browser-support.js';

const SHOTS = process.env.UPDATE_SCREENSHOTS === '1' ? fileURLToPath(new URL('../docs/', import.meta.url)) : mkdtempSync(join(tmpdir(), 'stockroom-shots-'));

async function newPage(browser: Browser): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  return context.newPage();
}

async function sessionIdOf(page: Page): Promise<string> {
  const cookie = (await page.context().cookies()).find((c) => c.name === '4DSID');
  assert.ok(cookie, 'a 4DSID cookie');
  return cookie.value;
}

test('browser: a lock seen from a second browser, released when the admin closes the holder\'s session; the holder comes back signed out, then restored', async (t) => {
  if (!chromiumOrSkip(t)) return;
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  const demo = await startTestDemo();
  try {
    const [alice, bob, admin] = [await newPage(browser), await newPage(browser), await newPage(browser)];

    // The admin opens the console first, to watch it update without a reload.
    await admin.goto(`${demo.url}/admin`);
    await admin.fill('input[name=token]', ADMIN_TOKEN);
    await admin.click('[data-testid=admin-login]');
    await admin.waitForSelector('[data-testid=sessions]');
    await admin.evaluate(() => { (globalThis as unknown as { marker: number }).marker = 42; });

    // Alice: sign in, search, page 2, two products in the cart, open the first product of the page.
    await alice.goto(`${demo.url}/`);
    await alice.click('[data-testid=login-alice]');
    await alice.fill('input[name=q]', 'lamp');
    await alice.selectOption('select[name=size]', '10');
    await alice.click('form.search button');
    await alice.click('[data-testid=next]');
    await alice.waitForSelector('[data-testid=page]:has-text("2")');
    await alice.locator('button:has-text("+ Cart")').nth(1).click();
    await alice.waitForSelector('[data-testid=cart-count]:has-text("Cart · 1")');
    await alice.locator('button:has-text("+ Cart")').nth(2).click();
    await alice.waitForSelector('[data-testid=cart-count]:has-text("Cart · 2")');
    const href = await alice.locator('[data-testid=products] tbody a').first().getAttribute('href');
    assert.ok(href);
    await alice.goto(`${demo.url}${href}`);
    await alice.waitForSelector('[data-testid=product][data-editable=yes]');
    const aliceSession = await sessionIdOf(alice);

    // Bob, in another browser, sees the record locked by Alice.
    await bob.goto(`${demo.url}/login`);
    await bob.click('[data-testid=login-bob]');
    await bob.goto(`${demo.url}${href}`);
    await bob.waitForSelector('[data-testid=product][data-editable=no]');
    assert.match(await bob.textContent('[data-testid=lock]') ?? '', new RegExp(`locked by Alice Martin \\(session ${aliceSession.slice(0, 8)}\\) since \\d\\d:\\d\\d:\\d\\d`));
    assert.equal(await bob.locator('input[name=name]').isDisabled(), true);

    // The console has picked both up by polling, without reloading.
    await admin.waitForSelector(`tr[data-session="${aliceSession}"]:has-text("Alice Martin"):has-text("product #")`, { timeout: 8000 });
    await admin.waitForSelector('tr:has-text("Bob Nguyen")', { timeout: 8000 });
    assert.equal(await admin.evaluate(() => (globalThis as unknown as { marker?: number }).marker), 42, 'no page reload');

    // WEB LEGACY CLOSE SESSION from the console.
    await admin.click(`tr[data-session="${aliceSession}"] button:has-text("Close")`);
    await admin.waitForSelector('[data-testid=flash]:has-text("closed")');
    assert.match(await admin.textContent('[data-testid=closes] tbody tr') ?? '', /alice\s*closed\s*cart 2 lines \(2 pcs\) · search “lamp”, page 2 .*lock on product #\d+ released/);
    assert.equal(await admin.locator(`tr[data-session="${aliceSession}"]`).count(), 0);

    // Bob can edit now.
    await bob.click('[data-testid=reload]');
    await bob.waitForSelector('[data-testid=product][data-editable=yes]');

    // Alice's next page load: a fresh, signed-out session that says what happened.
    await alice.reload();
    await alice.waitForSelector('h1:has-text("Sign in")');
    assert.match(await alice.textContent('[data-testid=notice]') ?? '', /Your previous session was closed at \d\d:\d\d:\d\d\. Its cart and search were saved/);
    assert.notEqual(await sessionIdOf(alice), aliceSession);

    // Signing in again restores page 2 of "lamp" and the cart; Bob's lock shows in the list.
    await alice.click('[data-testid=login-alice]');
    await alice.waitForSelector('[data-testid=notice]:has-text("Welcome back, Alice")');
    assert.equal(await alice.textContent('[data-testid=page]'), '2');
    assert.equal(await alice.textContent('[data-testid=cart-count]'), 'Cart · 2');
    await alice.waitForSelector('[data-testid=locked]:has-text("Bob Nguyen")');
    await alice.screenshot({ path: join(SHOTS, 'screenshot-app.png'), fullPage: true });

    await admin.reload();
    await admin.waitForSelector('tr:has-text("Bob Nguyen")');
    await admin.screenshot({ path: join(SHOTS, 'screenshot-admin.png'), fullPage: true });
  } finally {
    await browser.close();
    await demo.stop();
  }
});
