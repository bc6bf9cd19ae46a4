// The demo app's flows over real HTTP: sign-in restores what the close hook saved, paging reads the
// current selection, record locks and their release on every kind of close, logout, eviction, timeout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../src/index.js';
import { ADMIN_TOKEN, Client, productIds, startTestDemo, testAttr, testId } from './demo-client.js';

const MINUTE = 60_000;

test('a new visitor is sent to sign-in; signing in restores the search, page and cart the close hook saved', async () => {
  const demo = await startTestDemo();
  try {
    const alice = new Client(demo.url);
    const first = await alice.get('/');
    assert.match(first.body, /no passwords/);
    assert.ok(alice.sessionId, 'a session cookie from the first request');

    const visitorId = alice.sessionId;
    const welcome = await alice.signIn('alice');
    assert.match(testId(welcome.body, 'notice') ?? '', /Welcome, Alice/);
    assert.notEqual(alice.sessionId, visitorId, 'signing in moved the session to a fresh id (fixation defence)');
    const fixated = await new Client(demo.url).send('GET', '/products', undefined, true, { cookie: `4DSID=${visitorId}` });
    assert.match(fixated.body, /<h1>Sign in<\/h1>/, 'the pre-login id does not reach the signed-in session');
    await alice.get('/products?q=lamp&sort=price-desc&size=10');
    const page3 = await alice.get('/products?page=3');
    const [p1, p2] = productIds(page3.body);
    await alice.post('/cart', { action: 'add', id: String(p1) });
    await alice.post('/cart', { action: 'add', id: String(p2) });
    await alice.post('/cart', { action: 'add', id: String(p2) });
    const oldId = alice.sessionId;

    await alice.post('/logout');
    assert.notEqual(alice.sessionId, oldId);
    const saved = demo.db.loadPrefs(demo.db.userByLogin('alice')?.id ?? 0);
    assert.deepEqual(saved && { ...saved, savedAtMs: 0 }, {
      pageSize: 10, sort: 'price-desc', lastSearch: 'lamp', lastPage: 3, savedAtMs: 0, savedReason: 'closed',
      cart: [{ productId: p1, qty: 1 }, { productId: p2, qty: 2 }],
    });

    const back = await alice.signIn('alice'); // a new session: init ran, then the restore
    assert.match(testId(back.body, 'notice') ?? '', /Welcome back, Alice\. Restored from your session closed at .*search “lamp”, page 3, 2 lines in your cart/);
    assert.equal(testId(back.body, 'page'), '3');
    assert.deepEqual(productIds(back.body), productIds(page3.body));
    assert.match(testId(back.body, 'cart') ?? '', /1 × .*2 × /);
  } finally {
    await demo.stop();
  }
});

test('paging moves through the current selection across requests without running the query again', async () => {
  const demo = await startTestDemo();
  try {
    const bob = new Client(demo.url);
    await bob.signIn('bob');
    const searched = await bob.get('/products?q=oak&sort=name&size=25');
    const total = Number(testAttr(searched.body, 'selection', 'data-total'));
    assert.ok(total > 50, `oak matches ${total} products`);
    const searchesAfterQuery = demo.db.searches;

    const page1 = productIds(searched.body);
    const page2 = await bob.get('/products?page=2');
    const page3 = await bob.get('/products?page=3');
    const again = await bob.get('/products'); // no parameter: the selection's position is kept
    assert.equal(demo.db.searches, searchesAfterQuery, 'paging read the session\'s selection');
    assert.equal(testId(page2.body, 'page'), '2');
    assert.equal(testId(again.body, 'page'), '3');
    assert.deepEqual(productIds(again.body), productIds(page3.body));
    const seen = [...page1, ...productIds(page2.body), ...productIds(page3.body)];
    assert.equal(new Set(seen).size, 75, 'three pages, no repeats');

    const last = await bob.get('/products?page=999');
    assert.equal(testId(last.body, 'page'), String(Math.ceil(total / 25)), 'past the end: the last page');
  } finally {
    await demo.stop();
  }
});

test('opening a record takes its lock: another session sees it read-only with the holder and time; saving releases it', async () => {
  const demo = await startTestDemo();
  try {
    const alice = new Client(demo.url);
    const bob = new Client(demo.url);
    await alice.signIn('alice');
    const [id = 0] = productIds((await bob.signIn('bob')).body); // first row of bob's page

    const editing = await alice.get(`/products/${id}`);
    assert.equal(testAttr(editing.body, 'product', 'data-editable'), 'yes');
    const locked = await bob.get(`/products/${id}`);
    assert.equal(testAttr(locked.body, 'product', 'data-editable'), 'no');
    assert.match(testId(locked.body, 'lock') ?? '', new RegExp(`locked by Alice Martin \\(session ${alice.sessionId?.slice(0, 8)}\\) since \\d\\d:\\d\\d:\\d\\d`));
    const list = await bob.get('/products');
    assert.match(list.body, /data-testid="locked">locked · Alice Martin</);

    const saved = await alice.post(`/products/${id}`, { name: 'Renamed by Alice', category: 'Lighting', price: '12.50', stock: '4' });
    assert.match(testId(saved.body, 'notice') ?? '', /Saved “Renamed by Alice”/);
    assert.equal(demo.db.product(id)?.priceCents, 1250);
    assert.equal(demo.db.product(id)?.updatedBy, 'alice');
    const free = await bob.get(`/products/${id}`);
    assert.equal(testAttr(free.body, 'product', 'data-editable'), 'yes');
  } finally {
    await demo.stop();
  }
});

test('leaving the edit page (or cancelling) releases the record lock', async () => {
  const demo = await startTestDemo();
  try {
    const alice = new Client(demo.url);
    const bob = new Client(demo.url);
    await alice.signIn('alice');
    await bob.signIn('bob');
    await alice.get('/products/3');
    await alice.get('/products'); // leaves the record
    assert.equal(testAttr((await bob.get('/products/3')).body, 'product', 'data-editable'), 'yes');
    await bob.post('/products/3/release'); // cancel
    await alice.get('/products/3');
    await alice.get('/products/4'); // opening another record leaves this one
    assert.equal(testAttr((await bob.get('/products/3')).body, 'product', 'data-editable'), 'yes');
    assert.equal(testAttr((await bob.get('/products/4')).body, 'product', 'data-editable'), 'no');
  } finally {
    await demo.stop();
  }
});

test('closing the holder\'s session from the admin page saves it, releases its lock, and its browser then gets a fresh signed-out session', async () => {
  const demo = await startTestDemo();
  try {
    const alice = new Client(demo.url);
    const bob = new Client(demo.url);
    const admin = new Client(demo.url, { authorization: `Bearer ${ADMIN_TOKEN}` });
    await alice.signIn('alice');
    await alice.post('/cart', { action: 'add', id: '11' });
    await alice.get('/products/11');
    await bob.signIn('bob');
    assert.equal(testAttr((await bob.get('/products/11')).body, 'product', 'data-editable'), 'no');

    const page = await admin.post('/admin/sessions/close', { id: alice.sessionId ?? '' });
    assert.match(testId(page.body, 'flash') ?? '', new RegExp(`Session ${alice.sessionId?.slice(0, 8)} closed`));
    const [log] = demo.db.recentCloses(1);
    assert.equal(log?.reason, 'closed');
    assert.equal(log?.login, 'alice');
    assert.match(log?.saved ?? '', /cart 1 line \(1 pcs\).*lock on product #11 released/);

    assert.equal(testAttr((await bob.get('/products/11')).body, 'product', 'data-editable'), 'yes', 'the lock went with the session');
    const next = await alice.get('/products');
    assert.match(testId(next.body, 'notice') ?? '', /Your previous session was closed at \d\d:\d\d:\d\d\. Its cart and search were saved/);
    assert.match(next.body, /<h1>Sign in<\/h1>/);
  } finally {
    await demo.stop();
  }
});

test('logout closes the session: the hook saves with reason "closed", the cookie is cleared and the old id never comes back', async () => {
  const demo = await startTestDemo();
  try {
    const carol = new Client(demo.url);
    await carol.signIn('carol');
    const oldCookie = `4DSID=${carol.sessionId}`;
    const answer = await carol.send('POST', '/logout', '', false);
    assert.equal(answer.status, 303);
    assert.match(answer.setCookies.join('\n'), /^4DSID=; Max-Age=0;/m);
    assert.equal(demo.db.recentCloses(1)[0]?.reason, 'closed');
    assert.equal(demo.engine.sessions().some((s) => `4DSID=${s.id}` === oldCookie), false);

    const replay = new Client(demo.url);
    const revisit = await replay.send('GET', '/products', undefined, true, { cookie: oldCookie });
    assert.match(revisit.body, /<h1>Sign in<\/h1>/);
    assert.notEqual(replay.sessionId, oldCookie.slice(6));
  } finally {
    await demo.stop();
  }
});

test('an evicted session (the cap needed room) is saved by its hook, and its user gets everything back at the next sign-in', async () => {
  const demo = await startTestDemo({ engine: { maxSessions: 2 } });
  try {
    const dave = new Client(demo.url);
    const erin = new Client(demo.url);
    await dave.signIn('dave');
    await dave.get('/products?q=rug&sort=stock&size=50');
    await dave.post('/cart', { action: 'add', id: '20' });
    await erin.signIn('erin');
    await new Client(demo.url).get('/login'); // a third browser: dave's session is the least recently active

    const saved = demo.db.loadPrefs(demo.db.userByLogin('dave')?.id ?? 0);
    assert.equal(saved?.savedReason, 'evicted');
    assert.equal(saved?.lastSearch, 'rug');
    assert.deepEqual(saved?.cart, [{ productId: 20, qty: 1 }]);
    assert.equal(demo.engine.stats().closed.evicted, 1);

    const back = await dave.get('/');
    assert.match(testId(back.body, 'notice') ?? '', /evicted to make room/);
    const restored = await dave.signIn('dave');
    assert.match(testId(restored.body, 'notice') ?? '', /evicted to make room .*search “rug”/);
  } finally {
    await demo.stop();
  }
});

test('an idle session times out (time moved by a ManualClock) and its hook saves it with reason "timeout"', async () => {
  const clock = new ManualClock();
  const demo = await startTestDemo({ clock, engine: { inactiveProcessTimeoutMs: 10 * MINUTE } });
  try {
    const frank = new Client(demo.url);
    await frank.signIn('frank');
    await frank.post('/cart', { action: 'add', id: '30' });
    const closed = new Promise<string>((resolve) => demo.engine.once('close', (event) => resolve(event.reason)));
    clock.advance(10 * MINUTE);
    assert.equal(await closed, 'timeout');
    const saved = demo.db.loadPrefs(demo.db.userByLogin('frank')?.id ?? 0);
    assert.equal(saved?.savedReason, 'timeout');
    assert.deepEqual(saved?.cart, [{ productId: 30, qty: 1 }]);
    assert.equal(saved?.savedAtMs, clock.now());
  } finally {
    await demo.stop();
  }
});
