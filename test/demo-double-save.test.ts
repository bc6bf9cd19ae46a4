// "Save and release" clicked twice (a double click over a slow link): the browser shows the answer to the
// second post. The first one saved and released the lock; the second must not report a failed save.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client, productIds, startTestDemo, testId } from './demo-client.js';

test('a product form posted twice: the second answer says it was saved, not 409 "you do not hold the lock"', { timeout: 30_000 }, async () => {
  const demo = await startTestDemo();
  try {
    const bob = new Client(demo.url);
    const [id] = productIds((await bob.signIn('bob')).body);
    await bob.get(`/products/${id}`);
    const form = { name: 'Twice Saved Lamp', category: demo.db.product(id ?? 0)?.category ?? '', price: '12.50', stock: '42' };
    // The browser drops the answer to the first post (its navigation was replaced by the second).
    const body = new URLSearchParams(form).toString();
    const first = await bob.send('POST', `/products/${id}`, body, false);
    assert.equal(first.status, 303);
    const second = await bob.send('POST', `/products/${id}`, body);
    assert.equal(demo.db.product(id ?? 0)?.stock, 42, 'saved');
    assert.equal(second.status, 200, `the page the browser shows: ${testId(second.body, 'error') ?? ''}`);
    assert.match(testId(second.body, 'notice') ?? '', /Saved “Twice Saved Lamp”/);
  } finally {
    await demo.stop();
  }
});
