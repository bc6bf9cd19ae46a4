import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readSessionId } from '../src/http/cookie.js';
import { newSessionId } from '../src/session-id.js';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const IDS = 40_000; // more than a hundred draws of 256 ids: every refill of the entropy pool is crossed

test('session ids are distinct version-4 UUIDs that the cookie reader accepts, across many refills of the entropy pool', () => {
  const seen = new Set<string>();
  for (let i = 0; i < IDS; i++) {
    const id = newSessionId();
    assert.match(id, UUID_V4);
    seen.add(id);
  }
  assert.equal(seen.size, IDS, 'no id repeats');
  const id = newSessionId();
  assert.equal(readSessionId(`4DSID=${id}`, '4DSID'), id);
});

test('every random hex digit of the ids is uniform: no position is stuck, biased or copied from the previous id', () => {
  // 30 of the 32 digits are fully random (the version digit is fixed, the variant digit has 4 values).
  const counts = Array.from({ length: 36 }, () => new Array<number>(16).fill(0));
  let previous = newSessionId();
  let samePositions = 0;
  for (let i = 0; i < IDS; i++) {
    const id = newSessionId();
    for (let at = 0; at < 36; at++) {
      const digit = Number.parseInt(id[at]!, 16);
      if (Number.isNaN(digit)) continue; // a dash
      counts[at]![digit]!++;
      if (id[at] === previous[at]) samePositions++;
    }
    previous = id;
  }
  for (let at = 0; at < 36; at++) {
    if (at === 8 || at === 13 || at === 18 || at === 23 || at === 14 || at === 19) continue;
    // Chi-square with 15 degrees of freedom: 50 is far beyond p = 1e-5 (about 44), so a fair source never fails.
    const expected = IDS / 16;
    const chiSquare = counts[at]!.reduce((sum, n) => sum + (n - expected) ** 2 / expected, 0);
    assert.ok(chiSquare < 50, `digit ${at}: chi-square ${chiSquare.toFixed(1)}`);
  }
  assert.deepEqual(counts[19]!.map((n, digit) => (n > 0 ? digit : -1)).filter((d) => d >= 0), [8, 9, 10, 11], 'variant digit is 8, 9, a or b');
  // Two independent ids agree on a random digit 1 time in 16, on the variant digit 1 in 4, on the version always.
  const perPair = samePositions / IDS;
  const expectedPerPair = 30 / 16 + 1 / 4 + 1;
  assert.ok(Math.abs(perPair - expectedPerPair) < 0.1, `digits shared with the previous id: ${perPair.toFixed(3)} per id`);
});
