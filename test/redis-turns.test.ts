// TurnQueues (src/redis/turns.ts) in process: which enters learn that a release of their session was
// announced while they were on their way to Redis (an enter answered 'busy' then tries again at once).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TurnQueues } from '../src/redis/turns.js';

test('an enter learns of the releases announced while it was on its way, and only of those: not one before it left, not a waiter woken for another cause, not another session\'s', () => {
  const turns = new TurnQueues(60_000);
  const first = turns.entering('s');
  turns.released('s');
  const second = turns.entering('s'); // left after that release
  const other = turns.entering('t');
  assert.equal(turns.entered('s', second), false, 'a release before it left is not news');
  assert.equal(turns.entered('s', first), true);
  assert.equal(turns.entered('t', other), false, "another session's release");
  const third = turns.entering('s');
  turns.wakeHead('s'); // a head that got in or gave up, a rename: nothing was released
  assert.equal(turns.entered('s', third), false);
  // Nothing is kept once no enter of the session is on its way.
  const fourth = turns.entering('s');
  turns.released('s');
  assert.equal(turns.entered('s', fourth), true);
  assert.equal(turns.entered('s', turns.entering('s')), false, 'a fresh record: the old release is forgotten');
});
