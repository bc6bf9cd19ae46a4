// Of two sessions of one user, the save of the one used earlier is not stored when it closes after the
// other (demo-double-signin). Its browser must then not be told that its cart and search were saved
// (demo-saved-notice: the note must be true): they are gone, the other session's are kept.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../src/index.js';
import { ADMIN_TOKEN, Client, startTestDemo, testId } from './demo-client.js';

const MINUTE = 60_000;

test('two browsers of one user: the one used earlier, timed out after the other saved, is not told its cart and search were saved', { timeout: 30_000 }, async () => {
  const clock = new ManualClock();
  const demo = await startTestDemo({ clock, engine: { inactiveProcessTimeoutMs: 20 * MINUTE } });
  try {
    const laptop = new Client(demo.url);
    await laptop.signIn('carol');
    await laptop.post('/cart', { action: 'add', id: '20' });
    clock.advance(MINUTE);
    const phone = new Client(demo.url);
    await phone.signIn('carol');
    await phone.post('/cart', { action: 'add', id: '21' });
    await phone.post('/logout');
    const carol = demo.db.userByLogin('carol')?.id ?? 0;
    assert.deepEqual(demo.db.loadPrefs(carol)?.cart, [{ productId: 21, qty: 1 }], 'the phone saved its cart');

    // The laptop's session times out, 20 minutes after its last use: its save is not stored.
    const laptopId = laptop.sessionId;
    const closed = new Promise<string>((resolve) => demo.engine.on('close', (event) => { if (event.sessionId === laptopId) resolve(event.reason); }));
    clock.advance(20 * MINUTE);
    assert.equal(await closed, 'timeout');
    assert.match(demo.db.recentCloses(10).find((c) => c.sessionId === laptopId)?.saved ?? '', /not stored/, 'the laptop\'s save was not stored');
    assert.deepEqual(demo.db.loadPrefs(carol)?.cart, [{ productId: 21, qty: 1 }], 'the phone\'s cart is kept, not the laptop\'s');

    const back = await laptop.get('/');
    const notice = testId(back.body, 'notice') ?? '';
    assert.match(notice, /timed out|inactiv/i, notice);
    assert.doesNotMatch(notice, /were saved/, `the laptop's user is told its cart and search were saved; they were not stored: ${notice}`);
  } finally {
    await demo.stop();
  }
});

test('two browsers of one user: the admin closing the one used earlier, after the other saved, is not told its hook saved it', { timeout: 30_000 }, async () => {
  const clock = new ManualClock();
  const demo = await startTestDemo({ clock });
  try {
    const laptop = new Client(demo.url);
    await laptop.signIn('carol');
    await laptop.post('/cart', { action: 'add', id: '20' });
    clock.advance(MINUTE);
    const phone = new Client(demo.url);
    await phone.signIn('carol');
    await phone.post('/logout');
    const admin = await new Client(demo.url, { authorization: `Bearer ${ADMIN_TOKEN}` }).post('/admin/sessions/close', { id: laptop.sessionId ?? '' });
    assert.doesNotMatch(admin.body, /its hook saved it/);
    assert.match(admin.body, /used more recently had saved newer state/);
  } finally {
    await demo.stop();
  }
});
