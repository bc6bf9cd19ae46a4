// Other ways a client's (or a caller's) 36 characters could reach Redis: requests read before the node
// has started (the HTTP identity's reread), the programmatic acquire, and requests queued behind a
// running one. None of them may put a value that is not an id's shape into a command.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SessionEngine, type SessionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { request, sessionIdOf, startServer } from './helpers.js';
import { redisForTest, watchCommands } from './redis-support.js';

const HOSTILE = [`%0D%0AINJECTED <img src=x onerror=1>${'x'.repeat(4)}`, `%00${'a'.repeat(35)}`, `${'A'.repeat(8)}-AAAA-4AAA-8AAA-${'A'.repeat(12)}`];

test('Redis store: hostile 36-character cookies sent while the node starts, and a programmatic acquire, reach no command', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const { seen, stop: stopWatching } = await watchCommands(r);
  const client = await r.client();
  const engine = new SessionEngine({ store: createRedisStore({ redis: client, prefix: r.prefix, onStop: 'close' }) });
  const errors: SessionError[] = [];
  engine.on('error', (error) => errors.push(error));
  const server = await startServer(engine, (_req, res) => { setTimeout(() => res.end('ok'), 20); });
  try {
    // All at once, first thing: the earliest wait for the node's start and are read again after it.
    const answers = await Promise.all([...HOSTILE, ...HOSTILE].map((value) => request(server.url, { cookie: `4DSID=${value}` })));
    for (const answer of answers) assert.equal(answer.status, 200);
    const id = sessionIdOf(answers[0]!)!;
    // Queued behind a running request of a real session, each with a hostile cookie too.
    const queued = await Promise.all([`4DSID=${id}`, ...HOSTILE.map((v) => `4DSID=${v}`), `4DSID=${id}`].map((cookie) => request(server.url, { cookie })));
    for (const answer of queued) assert.equal(answer.status, 200);
    for (const value of HOSTILE.map(decodeURIComponent)) {
      const lease = await engine.acquire({ sessionId: value, ip: '127.0.0.1' });
      assert.notEqual(lease.sessionId, value);
      lease.release();
    }
    const hostile = HOSTILE.map((value) => decodeURIComponent(value));
    assert.ok(seen.some((line) => line.includes(id)), 'the monitor sees the store\'s commands');
    assert.deepEqual(seen.filter((line) => hostile.some((value) => line.includes(value))), [], 'no command carried a client-made value');
    for (const error of errors) assert.ok(error.sessionId === undefined || !hostile.includes(error.sessionId), error.message);
  } finally {
    stopWatching();
    await engine.stop().catch(() => {});
    await server.close();
  }
});
