// The note a browser gets after its session closed behind its back ("Its cart and search were saved")
// must be true: not when the close hook never ran (scalable mode) nor when it failed (a SQLite error).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { ADMIN_TOKEN, Client, startTestDemo, testId } from './demo-client.js';

const bearer = { authorization: `Bearer ${ADMIN_TOKEN}` };

test('scalable mode: an evicted user is not told that the hook saved a cart and search it never saved', { timeout: 30_000 }, async () => {
  const demo = await startTestDemo({ engine: { maxSessions: 2, mode: 'scalable' } });
  try {
    const dave = new Client(demo.url);
    await dave.signIn('dave');
    await dave.get('/products?q=rug&sort=stock&size=50');
    await dave.post('/cart', { action: 'add', id: '20' });
    await new Client(demo.url).get('/login');
    await new Client(demo.url).get('/login'); // dave's session, the least recently active, is evicted
    assert.equal(demo.engine.stats().closed.evicted >= 1, true);
    assert.equal(demo.db.loadPrefs(demo.db.userByLogin('dave')?.id ?? 0), undefined, 'nothing was saved (no hook in scalable mode)');
    assert.match(demo.db.recentCloses(5).map((c) => c.saved).join('\n'), /onClose not called/);

    const back = await dave.get('/');
    const notice = testId(back.body, 'notice') ?? '';
    assert.match(notice, /evicted to make room/);
    assert.doesNotMatch(notice, /were saved/, 'the user is told their cart and search were saved; they were lost');
  } finally {
    await demo.stop();
  }
});

test('legacy mode: when the close hook fails, the closed session\'s user is not told it was saved', { timeout: 30_000 }, async () => {
  const demo = await startTestDemo();
  try {
    const carol = new Client(demo.url);
    await carol.signIn('carol');
    await carol.post('/cart', { action: 'add', id: '20' });
    const outside = new Database(demo.dbPath);
    // The hook's save will fail (a real SQLite error, as from a full disk); reading still works.
    outside.exec("CREATE TRIGGER full_disk BEFORE INSERT ON close_log BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END");
    outside.close();
    const admin = await new Client(demo.url, bearer).post('/admin/sessions/close', { id: carol.sessionId ?? '' });
    assert.equal(demo.engine.stats().hookErrors, 1);
    assert.match(admin.body, /its hook failed/, 'the admin page says the close did not save');
    assert.doesNotMatch(admin.body, /its hook saved it/);

    const back = await carol.get('/');
    const notice = testId(back.body, 'notice') ?? '';
    assert.match(notice, /closed at/);
    assert.doesNotMatch(notice, /were saved/, 'the hook failed: nothing was saved');
  } finally {
    await demo.stop();
  }
});

test('legacy mode: when the close hook fails at sign-out, the sign-in page does not say it saved the cart and search', { timeout: 30_000 }, async () => {
  const demo = await startTestDemo();
  try {
    const erin = new Client(demo.url);
    await erin.signIn('erin');
    await erin.post('/cart', { action: 'add', id: '20' });
    const outside = new Database(demo.dbPath);
    outside.exec("CREATE TRIGGER full_disk BEFORE INSERT ON close_log BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END");
    outside.close();
    const out = await erin.post('/logout');
    assert.equal(demo.engine.stats().hookErrors, 1);
    const text = testId(out.body, 'notice') ?? '';
    assert.match(text, /You signed out/);
    assert.doesNotMatch(text, /saved your cart/, 'the hook failed: nothing was saved');
  } finally {
    await demo.stop();
  }
});
