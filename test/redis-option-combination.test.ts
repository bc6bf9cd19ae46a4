// Options are shared by the cluster (README: setOption on one node applies on every node). Two options
// that are valid alone but not together (cookieSameSite 'None' needs cookieSecure not false), set on two
// nodes at about the same time, must not leave the nodes with different cookie settings for good: the
// second write is refused in Redis, taken back on its node and reported there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../src/index.js';
import { eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { IP, node, stopAll } from './redis-crossing.js';

test('redis: cookieSecure false and cookieSameSite None set at once on two nodes: both nodes end with the same, valid, cookie options', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const a = await node(r, clock);
  const b = await node(r, clock);
  try {
    (await a.engine.acquire({ sessionId: undefined, ip: IP })).release();
    (await b.engine.acquire({ sessionId: undefined, ip: IP })).release();
    a.engine.setOption('cookieSecure', false);
    b.engine.setOption('cookieSameSite', 'None');
    const same = (): boolean => a.engine.getOption('cookieSecure') === b.engine.getOption('cookieSecure')
      && a.engine.getOption('cookieSameSite') === b.engine.getOption('cookieSameSite');
    const agreed = await eventually(same, 3_000);
    assert.ok(agreed, `a: ${String(a.engine.getOption('cookieSecure'))}/${a.engine.getOption('cookieSameSite')}, b: ${String(b.engine.getOption('cookieSecure'))}/${b.engine.getOption('cookieSameSite')}`);
    assert.ok(!(a.engine.getOption('cookieSameSite') === 'None' && a.engine.getOption('cookieSecure') === false), 'a valid combination');
    const takenBack = [...a.errors, ...b.errors].filter((e) => e.code === 'ERR_SESSION_INVALID_OPTION');
    assert.equal(takenBack.length, 1, `one setOption is taken back, and said so: ${[...a.errors, ...b.errors].map((e) => e.message).join('; ')}`);
    assert.match(takenBack[0]!.message, /taken back: another node set/);
    // The cluster holds the same pair (a node joining later reads it).
    const stored = await r.redis.hmget(`${r.prefix}opts`, 'cookieSecure', 'cookieSameSite');
    assert.ok(!(stored[0] === 'false' && stored[1] === '"None"'), `Redis holds a valid pair: ${JSON.stringify(stored)}`);
  } finally {
    await stopAll(clock, [], undefined, a, b);
  }
});
