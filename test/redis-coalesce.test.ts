import { mock, test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { ScriptBatches } from '../src/redis/batches.js';
import { coalesceWritesOf, defineCoalescedCommand, flushWrites, sendAheadOfLaterCalls } from '../src/redis/coalesce.js';
import { ManualClock, SessionEngine } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { redisForTest, type RedisForTest } from './redis-support.js';

type EchoClient = Redis & { lwsTestEcho(...args: (string | number)[]): Promise<string> };

/** Counts what reaches the connection's socket: one `_write` or `_writev` call is one system call's worth. */
function countSocketWrites(redis: Redis): { writes: number; chunks: number } {
  const seen = { writes: 0, chunks: 0 };
  const stream = redis.stream as unknown as { _write: (...a: unknown[]) => void; _writev?: (chunks: unknown[], cb: () => void) => void };
  const write = stream._write.bind(stream);
  const writev = stream._writev?.bind(stream);
  stream._write = (...args: unknown[]) => { seen.writes++; seen.chunks++; write(...args); };
  if (writev !== undefined) stream._writev = (chunks: unknown[], cb: () => void) => { seen.writes++; seen.chunks += chunks.length; writev(chunks, cb); };
  return seen;
}

/** A client of the test's with the echo script defined (and loaded), coalesced as the store's own client is unless `coalesced` is false. */
async function echoClient(r: RedisForTest, coalesced = true): Promise<EchoClient> {
  const client = await r.client() as EchoClient;
  if (coalesced) coalesceWritesOf(client);
  defineCoalescedCommand(client, 'lwsTestEcho', { lua: 'return ARGV[1]', numberOfKeys: 0 });
  await client.lwsTestEcho('warm'); // the script is loaded (EVALSHA from now on)
  return client;
}

test('script calls made in one turn of the event loop reach the socket as one write; each caller gets its own reply', async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const client = await echoClient(r);
  const seen = countSocketWrites(client);

  const replies = await Promise.all(Array.from({ length: 10 }, (_, i) => client.lwsTestEcho(`call-${i}`)));

  assert.deepEqual(replies, Array.from({ length: 10 }, (_, i) => `call-${i}`));
  assert.equal(seen.writes, 1, 'ten calls of one turn: one write');
  assert.equal(seen.chunks, 10);
});

test('coalescing holds the connection until the end of the turn only: calls of the next turn leave in a write of their own, and the client\'s own commands are untouched', async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const client = await echoClient(r);
  const seen = countSocketWrites(client);

  const first = client.lwsTestEcho('a');
  assert.equal(client.stream.writableCorked, 1, 'held during the turn');
  await nextTurn();
  assert.equal(client.stream.writableCorked, 0, 'let go at the end of the turn');
  const second = client.lwsTestEcho('b');
  assert.deepEqual(await Promise.all([first, second]), ['a', 'b']);
  assert.equal(seen.writes, 2);

  // A plain command of the application's is written at once, as ioredis writes it.
  const before = seen.writes;
  const pong = client.ping();
  assert.equal(seen.writes, before + 1);
  assert.equal(await pong, 'PONG');
});

test('a client without a connection of its own (a Cluster) or with a closed one: the call goes through ioredis as without coalescing', async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const client = await r.client() as EchoClient;
  defineCoalescedCommand(client, 'lwsTestEcho', { lua: 'return ARGV[1]', numberOfKeys: 0 });
  client.disconnect();
  await assert.rejects(client.lwsTestEcho('x'), /closed|writable/i);

  // No `stream` at all: nothing to hold, the defined command is still the one ioredis made.
  let called = 0;
  const streamless = { defineCommand(name: string) { (this as unknown as Record<string, unknown>)[name] = () => { called++; return Promise.resolve('ok'); }; } };
  defineCoalescedCommand(streamless, 'lwsTestEcho', { lua: 'return 1' });
  assert.equal(await (streamless as unknown as EchoClient).lwsTestEcho(), 'ok');
  assert.equal(called, 1);
});

test('a client the store did not make (the application\'s) is not coalesced: each script call is written at once', async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const client = await echoClient(r, false);
  const seen = countSocketWrites(client);
  const replies = Promise.all([client.lwsTestEcho('a'), client.set(`${r.prefix}k`, 'v'), client.lwsTestEcho('b')]);
  assert.equal(seen.writes, 3, 'written as they are sent, the application\'s SET among them');
  assert.equal(client.stream.writableCorked, 0);
  assert.deepEqual(await replies, ['a', 'OK', 'b']);
});

test('flushWrites lets what the turn holds leave at once (a batch sent from the check phase), and the end-of-turn uncork then does nothing more', async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const client = await echoClient(r);
  const seen = countSocketWrites(client);
  const first = [client.lwsTestEcho('a'), client.lwsTestEcho('b')];
  assert.equal(seen.writes, 0);
  flushWrites(client);
  assert.equal(seen.writes, 1, 'both left in one write, now');
  assert.equal(client.stream.writableCorked, 0);
  const later = client.lwsTestEcho('c'); // corks again, for the rest of this turn
  await nextTurn();
  assert.equal(client.stream.writableCorked, 0, 'each cork is let go exactly once');
  assert.deepEqual(await Promise.all([...first, later]), ['a', 'b', 'c']);
  assert.equal(seen.writes, 2);
});

test('fake timers installed after the store loaded (a test\'s) do not hold a script call: the end of the turn is the real one', { timeout: 5_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const client = await r.client() as EchoClient;
  coalesceWritesOf(client);
  defineCoalescedCommand(client, 'lwsTestEcho', { lua: 'return ARGV[1]', numberOfKeys: 0 });
  mock.timers.enable({ apis: ['setImmediate', 'setTimeout'] });
  try {
    assert.equal(await client.lwsTestEcho('under fake timers'), 'under fake timers');
  } finally {
    mock.timers.reset();
  }
});

test('a batch registered with sendAheadOfLaterCalls reaches Redis before any script call made after its items, on a corked client and on an application\'s', async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const list = `${r.prefix}order`;
  for (const coalesced of [true, false]) {
    const client = await r.client() as Redis & Record<string, (...args: (string | number)[]) => Promise<unknown>>;
    if (coalesced) coalesceWritesOf(client);
    // Both scripts append to one list, so the list is the order Redis ran them in.
    defineCoalescedCommand(client, 'lwsTestPush', { lua: `redis.call('RPUSH', ARGV[1], ARGV[2]) return 1`, numberOfKeys: 0 });
    defineCoalescedCommand(client, 'lwsTestPushMany', { lua: `local out = {} for i = 1, tonumber(ARGV[2]) do redis.call('RPUSH', ARGV[1], ARGV[2 + i]) out[i] = i end return out`, numberOfKeys: 0 });
    const batch = new ScriptBatches<number>(1, 64, (count, items) => client.lwsTestPushMany!(list, count, ...(items as string[])) as Promise<unknown>);
    sendAheadOfLaterCalls(client, () => batch.flush());
    await client.del(list);

    const queued = [batch.add(['queued-1']), batch.add(['queued-2'])];
    const later = client.lwsTestPush!(list, 'called-after');
    const afterTurn = batch.add(['queued-after']); // a new batch, sent at the end of the turn
    await Promise.all([...queued, later, afterTurn]);

    assert.deepEqual(await client.lrange(list, 0, -1), ['queued-1', 'queued-2', 'called-after', 'queued-after'], `coalesced: ${coalesced}`);
    client.disconnect();
  }
});

test('a batch taken off (the function sendAheadOfLaterCalls returns) no longer goes ahead of later calls, and the others still do', async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const client = await echoClient(r, false);
  const flushed = { first: 0, second: 0 };
  const stopFirst = sendAheadOfLaterCalls(client, () => { flushed.first++; });
  const stopSecond = sendAheadOfLaterCalls(client, () => { flushed.second++; });
  await client.lwsTestEcho('a');
  assert.deepEqual(flushed, { first: 1, second: 1 });
  stopFirst();
  stopFirst(); // twice: nothing more happens
  await client.lwsTestEcho('b');
  assert.deepEqual(flushed, { first: 1, second: 2 });
  stopSecond();
  await client.lwsTestEcho('c');
  assert.deepEqual(flushed, { first: 1, second: 2 });
});

test('a client the application shares between stores made one after another: a stopped store\'s batch no longer runs before the client\'s calls', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const client = await echoClient(r, false);
  const flushes = mock.method(ScriptBatches.prototype, 'flush');
  t.after(() => flushes.mock.restore());
  /** How many batches run before one of the client's script calls (they run before it is sent, synchronously). */
  const batchesAhead = (): number => {
    const before = flushes.mock.callCount();
    void client.lwsTestEcho('x');
    return flushes.mock.callCount() - before;
  };
  const newEngine = (): SessionEngine => new SessionEngine({ clock: new ManualClock(), store: createRedisStore({ redis: client, prefix: r.prefix }) });
  for (let i = 0; i < 3; i++) {
    const engine = newEngine();
    (await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' })).release();
    assert.equal(batchesAhead(), 1, 'the live store\'s batch goes ahead');
    await engine.stop();
    assert.equal(batchesAhead(), 0, `after store ${i + 1} stopped, none of the stopped stores' batches is left`);
  }
  const live = newEngine();
  (await live.acquire({ sessionId: undefined, ip: '127.0.0.1' })).release();
  assert.equal(batchesAhead(), 1);
  await live.stop();
});
