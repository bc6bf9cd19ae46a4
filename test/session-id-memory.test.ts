// The newest session id must not sit in Node's shared 8 KiB Buffer pool, where any small pooled Buffer
// made later (and exposed by its `.buffer`, as some libraries do) would carry it along.
import { newSessionId } from '../src/session-id.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';

test('the text a session id is written into is a buffer of its own, outside the shared pool', () => {
  const pooled = Buffer.from('a small buffer from the shared pool', 'latin1');
  const id = newSessionId();
  assert.ok(pooled.byteOffset > 0 || pooled.buffer.byteLength > pooled.length, 'the probe is pooled');
  assert.equal(Buffer.from(pooled.buffer).toString('latin1').includes(id), false, 'the id is readable through a pooled buffer');
});
