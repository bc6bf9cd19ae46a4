// Options are shared by the cluster (README: setOption on one node applies on every node). Two options
// that are valid alone but not together (cookieSameSite 'None' needs cookieSecure not false), set on two
// nodes at about the same time, must not leave the nodes with different cookie settings for good: the
// second write is refused in Redis, taken back on its node and reported there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../src/index.js';
import { deferred, eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { deafNode, IP, node, stopAll, wrapScript } from './redis-crossing.js';

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

test('redis: a refused setOption is not taken back over a later setOption of the same value on the node that the cluster took: the node keeps what the cluster holds', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const a = await deafNode(r, clock);
  const b = await node(r, clock);
  try {
    (await a.engine.acquire({ sessionId: undefined, ip: IP })).release();
    (await b.engine.acquire({ sessionId: undefined, ip: IP })).release();
    // b sets cookieSecure false; a has not heard it yet (its 'o' on its way).
    a.deaf = true;
    b.engine.setOption('cookieSecure', false);
    assert.ok(await eventually(async () => (await r.redis.hget(`${r.prefix}opts`, 'cookieSecure')) === 'false', 3_000), 'b wrote it');
    a.deaf = false;
    // a's writes after its first are answered late (their replies on their way when the first's comes).
    let calls = 0;
    const later = deferred();
    wrapScript(a.client, 'lwsSetOption', (original) => async (...args) => {
      const call = ++calls;
      const reply = await original(...args);
      if (call > 1) await later.promise;
      return reply;
    });
    // The cluster's options read again after the refusal: seen answered.
    let reread = false;
    const hgetall = a.client.hgetall.bind(a.client) as (key: string) => Promise<Record<string, string>>;
    (a.client as unknown as { hgetall: typeof hgetall }).hgetall = async (key) => {
      const stored = await hgetall(key);
      if (key === `${r.prefix}opts`) reread = true;
      return stored;
    };
    a.engine.setOption('cookieSameSite', 'None'); // refused in Redis: the cluster holds cookieSecure false
    a.engine.setOption('cookieSecure', true); // taken by the cluster
    a.engine.setOption('cookieSameSite', 'None'); // taken by the cluster: cookieSecure is true there now
    assert.ok(await eventually(() => a.errors.some((e) => /taken back/.test(e.message)), 3_000), 'the first is refused and said so');
    assert.ok(await eventually(() => reread, 3_000), 'a read the cluster\'s options again');
    later.resolve();
    assert.ok(await eventually(async () => (await r.redis.hget(`${r.prefix}opts`, 'cookieSameSite')) === '"None"', 3_000), 'the cluster holds None');
    assert.ok(await eventually(() => b.engine.getOption('cookieSameSite') === 'None' && b.engine.getOption('cookieSecure') === true, 3_000), 'b has the cluster\'s pair');
    const agreed = await eventually(() => a.engine.getOption('cookieSameSite') === 'None' && a.engine.getOption('cookieSecure') === true, 1_000);
    assert.ok(agreed, `a has the cluster's pair too: ${String(a.engine.getOption('cookieSecure'))}/${a.engine.getOption('cookieSameSite')}`);
  } finally {
    a.deaf = false;
    await stopAll(clock, [], undefined, a, b);
  }
});
