// A sign-in form posted twice (a double click on a user card over a slow link: the second post still
// carries the pre-sign-in cookie) leaves a second signed-in session for the same user that nobody uses.
// When that orphan times out, its close hook must not overwrite what the user's real session saved later.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../src/index.js';
import { Client, startTestDemo } from './demo-client.js';

const MINUTE = 60_000;

test('a double-posted sign-in: the orphan session\'s timeout does not overwrite the cart and search the used session saved', { timeout: 30_000 }, async () => {
  const clock = new ManualClock();
  const demo = await startTestDemo({ clock, engine: { inactiveProcessTimeoutMs: 20 * MINUTE } });
  try {
    const first = new Client(demo.url);
    await first.get('/login');
    const preSignIn = `4DSID=${first.sessionId}`;
    await first.signIn('carol');
    // The second post of the same form, sent with the cookie the browser had when it was clicked.
    const browser = new Client(demo.url);
    await browser.send('POST', '/login', 'user=carol', true, { cookie: preSignIn });
    assert.equal(demo.engine.sessions().filter((s) => s.id === first.sessionId || s.id === browser.sessionId).length, 2, 'two signed-in sessions for one browser');

    // The browser carries on in the session whose cookie it kept, and signs out five minutes later.
    clock.advance(MINUTE);
    await browser.get('/products?q=rug&sort=stock&size=50');
    await browser.post('/cart', { action: 'add', id: '20' });
    clock.advance(4 * MINUTE);
    await browser.post('/logout');
    const carol = demo.db.userByLogin('carol')?.id ?? 0;
    assert.deepEqual(demo.db.loadPrefs(carol)?.cart, [{ productId: 20, qty: 1 }], 'sign-out saved the cart');

    // The orphan was never used after sign-in: it times out 20 minutes after it.
    const closed = new Promise<string>((resolve) => demo.engine.once('close', (event) => resolve(event.reason)));
    clock.advance(16 * MINUTE);
    assert.equal(await closed, 'timeout');

    const saved = demo.db.loadPrefs(carol);
    assert.equal(saved?.lastSearch, 'rug', 'the search saved at sign-out is still there');
    assert.deepEqual(saved?.cart, [{ productId: 20, qty: 1 }], 'the cart saved at sign-out is still there');
  } finally {
    await demo.stop();
  }
});
