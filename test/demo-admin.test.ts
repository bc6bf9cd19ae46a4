// The demo's admin console, /metrics, and its answers to bad input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { once } from 'node:events';
import Database from 'better-sqlite3';
import { ManualClock } from '../src/index.js';
import { request } from './helpers.js';
import { ADMIN_TOKEN, Client, productIds, startTestDemo, testId } from './demo-client.js';

const bearer = { authorization: `Bearer ${ADMIN_TOKEN}` };

/** The value of one sample in a Prometheus text exposition (labels as written, e.g. `{reason="closed"}`). */
function sample(text: string, name: string, labels = ''): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

test('/admin, /admin/live and /metrics need the admin token: a bearer header or the cookie the sign-in form sets', async () => {
  const demo = await startTestDemo();
  try {
    const visitor = new Client(demo.url);
    const gate = await visitor.get('/admin');
    assert.equal(gate.status, 401);
    assert.match(gate.body, /Paste the admin token/);
    assert.equal((await visitor.get('/admin/live')).status, 401);
    const metrics = await request(demo.url, { path: '/metrics' });
    assert.equal(metrics.status, 401);
    assert.match(String(metrics.headers['www-authenticate']), /^Bearer/);

    const wrong = await visitor.post('/admin/login', { token: 'guess' });
    assert.equal(wrong.status, 401);
    assert.equal(testId(wrong.body, 'error'), 'That is not the admin token.');

    const signedIn = await visitor.post('/admin/login', { token: ADMIN_TOKEN });
    assert.equal(signedIn.status, 200);
    assert.match(visitor.cookie('stockroom_admin') ?? '', /^[\w-]{40,}$/);
    assert.ok(!signedIn.body.includes(ADMIN_TOKEN), 'the page never shows the token');
    assert.match((await visitor.get('/admin/live')).body, /data-testid="sessions"/);
    assert.equal((await visitor.get('/metrics')).status, 200, 'the console cookie opens /metrics too');

    const scrape = await request(demo.url, { path: '/metrics', headers: bearer });
    assert.equal(scrape.status, 200);
    assert.match(String(scrape.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  } finally {
    await demo.stop();
  }
});

test('wrong admin tokens are throttled per address (429 after five in a minute, the right one too); an admin sign-out voids every admin cookie', async () => {
  const demo = await startTestDemo();
  try {
    const first = new Client(demo.url);
    const second = new Client(demo.url);
    assert.equal((await first.post('/admin/login', { token: ADMIN_TOKEN })).status, 200);
    assert.equal((await second.post('/admin/login', { token: ADMIN_TOKEN })).status, 200);
    assert.equal((await second.get('/admin')).status, 200);
    await first.post('/admin/logout', {});
    assert.equal((await second.get('/admin')).status, 401, 'the other browser\'s admin cookie is void too');
    assert.equal((await second.post('/admin/login', { token: ADMIN_TOKEN })).status, 200);
    await new Client(demo.url).post('/admin/logout', {});
    assert.equal((await second.get('/admin')).status, 200, 'a sign-out without the admin token voids nothing');

    const guesser = new Client(demo.url);
    for (let i = 0; i < 5; i++) assert.equal((await guesser.post('/admin/login', { token: `guess-${i}` })).status, 401);
    const refused = await guesser.post('/admin/login', { token: ADMIN_TOKEN });
    assert.equal(refused.status, 429, 'throttled, even with the right token');
    assert.equal((await request(demo.url, { path: '/metrics', headers: bearer })).status, 401, 'the bearer header from that address too');
  } finally {
    await demo.stop();
  }
});

test('the admin page lists each live session with user, IP, created, idle time, state, processes and locks', async () => {
  const clock = new ManualClock();
  const demo = await startTestDemo({ clock });
  try {
    const alice = new Client(demo.url);
    const [id] = productIds((await alice.signIn('alice')).body);
    await alice.get(`/products/${id}`);
    clock.advance(90_000);

    const admin = new Client(demo.url, bearer);
    const live = (await admin.get('/admin/live')).body;
    const row = new RegExp(`<tr data-session="${alice.sessionId}"[\\s\\S]*?</tr>`).exec(live)?.[0] ?? '';
    for (const expected of [alice.sessionId?.slice(0, 8) ?? '?', 'Alice Martin', '127.0.0.1', '>1 min<', 'pill idle', `product #${id}`, 'Close']) {
      assert.ok(row.includes(expected), `${expected} in ${row}`);
    }
    assert.match(live, /class="me">[\s\S]*?pill">you<[\s\S]*?admin console[\s\S]*?pill busy/, 'the console\'s own session: busy, serving this request');
    assert.match(testId(live, 'stat-sessions') ?? '', /^Sessions 2 \/ 50/);
  } finally {
    await demo.stop();
  }
});

test('options apply at run time through WEB SET OPTION; invalid values get 400 with every message, and change nothing', async () => {
  const demo = await startTestDemo();
  try {
    const admin = new Client(demo.url, bearer);
    const applied = await admin.post('/admin/options', { maxSessions: '7', inactiveProcessTimeout: '30', inactiveSessionTimeout: '90', mode: 'legacy' });
    assert.equal(testId(applied.body, 'flash'), 'Options applied.');
    assert.equal(demo.engine.getOption('maxSessions'), 7);
    assert.equal(demo.engine.getOption('inactiveProcessTimeoutMs'), 30 * 60_000);
    assert.equal(demo.engine.getOption('inactiveSessionTimeoutMs'), 90 * 60_000);

    const refused = await admin.post('/admin/options', { maxSessions: 'ten', inactiveProcessTimeout: '-5', inactiveSessionTimeout: '99999999', mode: 'turbo' });
    assert.equal(refused.status, 400);
    assert.equal(testId(refused.body, 'error'), 'Max sessions must be a whole number. Inactive process timeout must be between 0 and 527040. '
      + 'Inactive session timeout must be between 0 and 527040. Mode must be one of: legacy, scalable, none.');
    assert.match(refused.body, /name="maxSessions" value="ten"/, 'the form keeps what was typed');
    assert.equal(demo.engine.getOption('maxSessions'), 7);

    await admin.post('/admin/options', { maxSessions: '0', inactiveProcessTimeout: '0', inactiveSessionTimeout: '0', mode: 'legacy' });
    assert.equal(demo.engine.getOption('maxSessions'), 100, '0 restores 4D\'s default');
    assert.equal(demo.engine.getOption('inactiveProcessTimeoutMs'), 480 * 60_000);
  } finally {
    await demo.stop();
  }
});

test('in scalable mode set from the admin page, sign-out cannot close the session and the close hook never runs', async () => {
  const demo = await startTestDemo();
  try {
    await new Client(demo.url, bearer).post('/admin/options', { maxSessions: '50', inactiveProcessTimeout: '20', inactiveSessionTimeout: '60', mode: 'scalable' });
    const erin = new Client(demo.url);
    await erin.signIn('erin');
    const id = erin.sessionId;
    const out = await erin.post('/logout');
    assert.match(testId(out.body, 'notice') ?? '', /not in legacy mode: the session was not closed and nothing was saved/);
    assert.equal(erin.sessionId, id);
    assert.equal(demo.db.loadPrefs(demo.db.userByLogin('erin')?.id ?? 0), undefined);
  } finally {
    await demo.stop();
  }
});

test('/metrics reports sessions, processes, busy, locks, closes by reason, 503s, hook duration and hook errors', async () => {
  const demo = await startTestDemo();
  try {
    const alice = new Client(demo.url);
    const bob = new Client(demo.url);
    const [id] = productIds((await alice.signIn('alice')).body);
    await alice.get(`/products/${id}`);
    await bob.signIn('bob');
    await bob.post('/logout');
    const text = (await request(demo.url, { path: '/metrics', headers: bearer })).body;
    const expected: [string, string, number][] = [
      ['lws_sessions', '', 2], ['lws_processes', '', 2], ['lws_sessions_busy', '', 0], ['lws_locks_held', '', 1],
      ['lws_session_closes_total', '{reason="closed"}', 1], ['lws_session_closes_total', '{reason="evicted"}', 0],
      ['lws_rejected_requests_total', '{cause="sessionLimit",status="503"}', 0], ['lws_close_hook_duration_seconds_count', '', 1],
      ['lws_close_hook_errors_total', '{kind="failed"}', 0], ['lws_close_hook_errors_total', '{kind="timeout"}', 0], ['lws_sessions_created_total', '', 3],
    ];
    for (const [name, labels, value] of expected) assert.equal(sample(text, name, labels), value, `${name}${labels}`);
    // Every cause the engine counts is exported (a cause left out hid its 503s).
    for (const cause of Object.keys(demo.engine.stats().rejected)) assert.match(text, new RegExp(`^lws_rejected_requests_total\\{cause="${cause}",`, 'm'), cause);
    assert.match(text, /# TYPE lws_close_hook_duration_seconds histogram/);
    assert.match(text, /^process_cpu_user_seconds_total /m, 'Node default metrics too');
  } finally {
    await demo.stop();
  }
});

test('when every session is busy a newcomer gets 503 with Retry-After, and /metrics counts it', async () => {
  const demo = await startTestDemo({ engine: { maxSessions: 1 } });
  try {
    // A request that keeps its (new) session busy: the body is announced but not yet sent.
    const slow = http.request(`${demo.url}/login`, { method: 'POST', agent: false, headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': '10' } });
    slow.write('user=');
    while (demo.engine.stats().busySessions === 0) await new Promise((resolve) => setImmediate(resolve));
    const refused = await request(demo.url, { path: '/login' });
    assert.equal(refused.status, 503);
    assert.equal(refused.headers['retry-after'], '1');
    assert.deepEqual(refused.setCookies, []);
    const text = (await request(demo.url, { path: '/metrics', headers: bearer })).body;
    assert.equal(sample(text, 'lws_rejected_requests_total', '{cause="sessionLimit",status="503"}'), 1);
    const answered = once(slow, 'response') as Promise<[http.IncomingMessage]>;
    slow.end('alice');
    const [response] = await answered;
    response.resume();
    assert.equal(response.statusCode, 303);
  } finally {
    await demo.stop();
  }
});

test('a close hook that fails is reported (engine error event, /metrics, admin page) and the session still closes', async () => {
  const demo = await startTestDemo();
  try {
    const carol = new Client(demo.url);
    await carol.signIn('carol');
    const outside = new Database(demo.dbPath);
    outside.exec('DROP TABLE prefs'); // the save will fail: a real SQLite error, not a mock
    outside.close();
    await carol.post('/logout');
    assert.equal(demo.engine.stats().sessions, 1, 'closed anyway; only the new visitor session is left');
    assert.match(demo.logs.join('\n'), /ERR_SESSION_HOOK_FAILED.*no such table: prefs/);
    const text = (await request(demo.url, { path: '/metrics', headers: bearer })).body;
    assert.equal(sample(text, 'lws_close_hook_errors_total', '{kind="failed"}'), 1);
    assert.match(testId((await new Client(demo.url, bearer).get('/admin/live')).body, 'stat-hook-errors') ?? '', /^Hook errors 1/);
  } finally {
    await demo.stop();
  }
});

test('metric scrapes, static files and health checks neither create nor touch a session', async () => {
  const demo = await startTestDemo();
  try {
    for (const path of ['/metrics', '/metrics', '/assets/style.css', '/assets/admin.js', '/healthz']) {
      const response = await request(demo.url, { path, headers: bearer });
      assert.equal(response.status, 200, path);
      assert.deepEqual(response.setCookies, [], path);
    }
    assert.equal(demo.engine.stats().created, 0);
  } finally {
    await demo.stop();
  }
});

test('bad input: unknown routes 404, wrong method 405, invalid values 400 with a message, stale lock 409, oversized bodies 413', async () => {
  const demo = await startTestDemo();
  try {
    const dave = new Client(demo.url);
    assert.equal((await dave.get('/nope')).status, 404);
    assert.equal((await dave.signIn('zed')).status, 400);
    assert.match(testId((await dave.signIn('zed')).body, 'error') ?? '', /There is no user “zed”/);
    const [id] = productIds((await dave.signIn('dave')).body);
    const cases: [string, string, number, RegExp][] = [
      ['GET', '/products/999999', 404, /There is no product “999999”/],
      ['GET', '/products/abc', 404, /There is no product/],
      ['GET', '/logout', 405, /GET is not allowed here/],
      ['GET', '/products?q=x&sort=bogus', 400, /Sort must be one of: name, sku, price-asc, price-desc, stock/],
      ['GET', '/products?q=x&size=7', 400, /Page size must be one of 10, 25, 50, 100/],
      ['GET', '/products?page=two', 400, /Page must be a whole number/],
      ['POST', '/cart', 400, /Product id must be a whole number/],
      ['POST', `/products/${id}`, 409, /do not hold the lock/],
    ];
    for (const [method, path, status, message] of cases) {
      const response = await dave.send(method, path, method === 'POST' ? 'action=add' : undefined);
      assert.equal(response.status, status, `${method} ${path}`);
      assert.match(testId(response.body, 'error') ?? '', message, `${method} ${path}`);
    }
    assert.equal((await dave.send('GET', '/logout')).headers.allow, 'POST');

    await dave.get(`/products/${id}`);
    const before = demo.db.product(id ?? 0);
    const invalid = await dave.post(`/products/${id}`, { name: '', category: 'Spaceships', price: '12,5', stock: '-1' });
    assert.equal(invalid.status, 400);
    assert.equal(testId(invalid.body, 'error'), 'Name is required, at most 80 characters. Category must be one of: Lighting, Furniture, Kitchen, Garden, Office, Tools, Textiles, Storage. '
      + 'Price must be an amount such as 12 or 12.50 (at most 999999.99). Stock must be a whole number from 0 to 999999.');
    assert.deepEqual(demo.db.product(id ?? 0), before);

    const huge = await dave.post('/cart', { action: 'add', id: '1', padding: 'x'.repeat(20_000) });
    assert.equal(huge.status, 413);
    assert.equal(testId(huge.body, 'error'), 'A form here is at most 8 KiB.');
    assert.equal(testId((await dave.get('/products')).body, 'cart-count'), 'Cart · 0', 'the refused form changed nothing');
  } finally {
    await demo.stop();
  }
});
