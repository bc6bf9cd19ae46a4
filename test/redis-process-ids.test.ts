// What a Redis store's cluster keeps when its keys are gone, and what its last node's stop() says when
// Redis does not answer.
//  - `proc.processId` is unique in the cluster and never reused (README, "A node dies during a hook": the
//    idempotency key for hooks that write elsewhere, `INSERT … ON CONFLICT (process_id) DO NOTHING`). Its
//    counter, `P seq`, has the shared keys' lifetime, so it goes after a cluster was stopped longer than
//    that, or with Redis's data (a restart without persistence, a FLUSHDB): made afresh it must not hand
//    out r1 again, or an application following that advice drops the hooks of the new processes.
//  - `stop()` of the last node with `onStop: 'auto'` while Redis does not answer cannot tell whether other
//    nodes are alive: it keeps the sessions and says so, never returning quietly with nothing closed.
//  - A node that starts on a Redis that may evict sessions (maxmemory-policy) says so.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { ManualClock, SessionEngine } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { wrapScript, type Vars } from './redis-crossing.js';
import { deleteKeys, redisForTest } from './redis-support.js';
import { eventually } from './helpers.js';
import { ownRedisForTest } from './fixtures/redis-server.js';

const IP = '127.0.0.1';

test('a process id is never reused: a cluster started again after its keys went (expired, or lost with Redis\'s data) does not hand out r1 again', { timeout: 30_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const hooked: string[] = [];
  const node = (): SessionEngine<Vars> => new SessionEngine<Vars>({ clock: new ManualClock(), onClose: (proc) => { hooked.push(proc.processId); }, store: createRedisStore({ url: r.url, prefix: r.prefix }) });
  const first = node();
  const lease = await first.acquire({ sessionId: undefined, ip: IP });
  const firstId = lease.proc.processId;
  lease.release();
  await first.stop(); // the last node: its session closes with 'shutdown', hook and all
  assert.deepEqual(hooked, [firstId]);
  // Every key of the stopped cluster gone, the counter with them: what their expiry, a Redis restarted
  // without persistence or a FLUSHDB leaves.
  await deleteKeys(r.redis, r.prefix);

  const second = node();
  try {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const again = await second.acquire({ sessionId: undefined, ip: IP });
      ids.push(again.proc.processId);
      again.release();
    }
    for (const id of ids) {
      assert.match(id, /^r\d{14}$/, 'a counter made afresh starts at Redis\'s time in tenths of a millisecond (14 digits, as Lua writes them in full)');
      assert.ok(Number(id.slice(1)) > Number(firstId.slice(1)), `a new process of the restarted cluster got ${id}, not above ${firstId} handed out before`);
    }
    assert.equal(new Set(ids).size, ids.length);
  } finally {
    await second.stop();
  }
});

test("stop() of the only node with onStop 'auto' while Redis does not answer: the failure is reported, not taken for other nodes being alive", { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const client = await r.client();
  const hooks: string[] = [];
  const engine = new SessionEngine<Vars>({
    clock: new ManualClock(), closeTimeoutMs: 1_000,
    onClose: (proc, reason) => { hooks.push(`${proc.processId} ${reason}`); },
    store: createRedisStore({ redis: client, prefix: r.prefix, pollIntervalMs: 5 }),
  });
  const errors: string[] = [];
  engine.on('error', (error) => errors.push(error.code));
  const lease = await engine.acquire({ sessionId: undefined, ip: IP });
  lease.release();
  assert.ok(await eventually(async () => (await r.redis.zscore(`${r.prefix}idle`, lease.sessionId)) !== null), 'the release landed: the session is idle in Redis');
  // Redis refuses the stop's heartbeat (as it does when it is away, or out of memory under noeviction).
  wrapScript(client, 'lwsHeartbeat', () => async () => { throw new Error('Connection is closed.'); });
  await engine.stop();
  assert.deepEqual(errors, ['ERR_SESSION_STORE_UNAVAILABLE'], 'the stop says it could not tell');
  assert.deepEqual(hooks, [], 'nothing closed: another node may be alive');
  assert.equal(await r.redis.exists(`${r.prefix}s:${lease.sessionId}`), 1, 'the session is kept, for a node that comes back to time it out');
});

test('a node that starts on a Redis that may evict (maxmemory-policy other than noeviction) says so once; on noeviction it says nothing', { timeout: 30_000 }, async (t) => {
  const server = await ownRedisForTest(t); // reconfigured below: never the shared Redis
  if (server === undefined) return;
  const admin = new Redis(server.url, { maxRetriesPerRequest: 0 });
  t.after(() => admin.disconnect());
  for (const [policy, expected] of [['noeviction', []], ['allkeys-lru', ['ERR_SESSION_STORE_EVICTS']], ['volatile-ttl', ['ERR_SESSION_STORE_EVICTS']]] as const) {
    await admin.config('SET', 'maxmemory-policy', policy);
    const engine: SessionEngine<Vars> = new SessionEngine<Vars>({ clock: new ManualClock(), store: createRedisStore({ url: server.url, prefix: `lws-test:evicts-${policy}:` }) });
    const errors: string[] = [];
    engine.on('error', (error) => errors.push(error.code));
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    lease.release();
    const second = await engine.acquire({ sessionId: lease.sessionId, ip: IP });
    second.release();
    await engine.stop();
    assert.deepEqual(errors, expected, policy);
    assert.equal(engine.stats().storeErrors, expected.length, policy);
  }
});
