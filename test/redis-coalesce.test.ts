import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { defineCoalescedCommand } from '../src/redis/coalesce.js';
import { redisForTest } from './redis-support.js';

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

test('script calls made in one turn of the event loop reach the socket as one write; each caller gets its own reply', async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const client = await r.client() as EchoClient;
  defineCoalescedCommand(client, 'lwsTestEcho', { lua: 'return ARGV[1]', numberOfKeys: 0 });
  await client.lwsTestEcho('warm'); // the script is loaded (EVALSHA from now on)
  const seen = countSocketWrites(client);

  const replies = await Promise.all(Array.from({ length: 10 }, (_, i) => client.lwsTestEcho(`call-${i}`)));

  assert.deepEqual(replies, Array.from({ length: 10 }, (_, i) => `call-${i}`));
  assert.equal(seen.writes, 1, 'ten calls of one turn: one write');
  assert.equal(seen.chunks, 10);
});

test('coalescing holds the connection until the end of the turn only: calls of the next turn leave in a write of their own, and the client\'s own commands are untouched', async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const client = await r.client() as EchoClient;
  defineCoalescedCommand(client, 'lwsTestEcho', { lua: 'return ARGV[1]', numberOfKeys: 0 });
  await client.lwsTestEcho('warm');
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
