// ScriptBatches (src/redis/batches.ts): the calls of one turn go as one script call, each caller gets its
// part of the reply, and a failure of the call reaches every caller of it (none is left waiting).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ScriptBatches, type ScriptArg } from '../src/redis/batches.js';

interface Sent { readonly count: number; readonly items: ScriptArg[] }

function batches(maxPerCall: number, answer: (sent: Sent) => unknown): { batches: ScriptBatches<string>; sent: Sent[] } {
  const sent: Sent[] = [];
  return {
    sent,
    batches: new ScriptBatches<string>(2, maxPerCall, (count, items) => {
      sent.push({ count, items: [...items] });
      return answer(sent.at(-1)!) as Promise<unknown>;
    }),
  };
}

const echo = (s: Sent): Promise<string[]> => Promise.resolve(Array.from({ length: s.count }, (_, i) => `${String(s.items[2 * i])}!`));

test('the calls made in one turn go as one script call, in order, and each caller gets its own part of the reply', { timeout: 5_000 }, async () => {
  const { batches: b, sent } = batches(10, echo);
  const replies = await Promise.all([b.add(['a', 1]), b.add(['b', 2]), b.add(['c', 3])]);
  assert.deepEqual(replies, ['a!', 'b!', 'c!']);
  assert.deepEqual(sent, [{ count: 3, items: ['a', 1, 'b', 2, 'c', 3] }]);
  assert.equal(await b.add(['d', 4]), 'd!', 'a later turn makes a new call');
  assert.equal(sent.length, 2);
});

test('a full call goes at once; the rest of the turn goes in the next call', { timeout: 5_000 }, async () => {
  const { batches: b, sent } = batches(2, echo);
  const replies = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((x) => b.add([x, 0])));
  assert.deepEqual(replies, ['a!', 'b!', 'c!', 'd!', 'e!']);
  assert.deepEqual(sent.map((s) => s.count), [2, 2, 1]);
});

test('a call that fails, throws at once or answers the wrong number of results fails every caller of it', { timeout: 5_000 }, async () => {
  for (const answer of [
    (): Promise<never> => Promise.reject(new Error('Redis is away')),
    (): never => { throw new Error('thrown, not rejected'); },
    (): Promise<string[]> => Promise.resolve(['only one']),
  ]) {
    const { batches: b } = batches(10, answer);
    const outcomes = await Promise.allSettled([b.add(['a', 1]), b.add(['b', 2]), b.add(['c', 3])]);
    assert.deepEqual(outcomes.map((o) => o.status), ['rejected', 'rejected', 'rejected']);
  }
  const { batches: full } = batches(2, () => { throw new Error('thrown when full'); });
  const outcomes = await Promise.allSettled([full.add(['a', 1]), full.add(['b', 2]), full.add(['c', 3])]);
  assert.deepEqual(outcomes.map((o) => o.status), ['rejected', 'rejected', 'rejected'], 'the full call and the next one');
});

test('a call with the wrong number of arguments is a TypeError, before anything is sent', { timeout: 5_000 }, () => {
  const { batches: b, sent } = batches(10, echo);
  assert.throws(() => b.add(['a']), TypeError);
  assert.equal(sent.length, 0);
});

test('maxBytesPerCall: the calls of one turn go together up to that many bytes of arguments; one larger goes alone', { timeout: 5_000 }, async () => {
  const sent: Sent[] = [];
  const b = new ScriptBatches<string>(2, 100, (count, items) => {
    sent.push({ count, items: [...items] });
    return echo(sent.at(-1)!);
  }, 100);
  const big = 'x'.repeat(150);
  const replies = await Promise.all([b.add(['a', 'y'.repeat(40)]), b.add(['b', 'y'.repeat(40)]), b.add(['c', 'y'.repeat(40)]), b.add([big, 0]), b.add(['d', 1])]);
  assert.deepEqual(replies, ['a!', 'b!', 'c!', `${big}!`, 'd!']);
  assert.deepEqual(sent.map((s) => s.count), [2, 1, 1, 1], 'a and b (82 bytes); c; the large one alone; d');
});
