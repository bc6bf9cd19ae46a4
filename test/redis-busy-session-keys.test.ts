// A session with work under way (a spawned task, a long request) is busy: it is never timed out, on
// either store. On Redis its keys live a key lifetime (the timeout plus graceMs) from their last write,
// and a task or request that runs longer than that with no other request of its session writes nothing:
// the keys would expire under it, the session vanish without its hook (the sweep forgets ids whose key
// is gone) and its locks go free while the task still holds them. The node running the work renews
// them with each heartbeat. Here the keys' remaining life is cut in Redis (what a task outliving the key
// lifetime leads to: real key lifetimes are a minute or more) and the heartbeat, every nodeLeaseMs / 3
// in real time, must give them a full lifetime again.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type SessionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { deferred, eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';

const IP = '127.0.0.1';
const NODE_LEASE_MS = 600; // a heartbeat every 200 ms
const CUT_TO_MS = 1_500;

type Vars = { done?: string };

async function keysOf(redis: import('ioredis').Redis, prefix: string, id: string, processId: string): Promise<string[]> {
  const set = `${prefix}plocks:${processId}`;
  return [`${prefix}s:${id}`, set, ...await redis.smembers(set)];
}

for (const work of ['a spawned task', 'a long request'] as const) {
  test(`Redis store: ${work} running longer than the key lifetime keeps its session's keys and its locks alive (heartbeat), and the session closes later, hooked once`, { timeout: 20_000 }, async (t: TestContext) => {
    const r = await redisForTest(t);
    if (r === undefined) return;
    const hooked: Array<string | undefined> = [];
    const engine = new SessionEngine<Vars>({
      clock: new ManualClock(), init: () => ({}),
      onClose: (proc) => { hooked.push(proc.vars.done); },
      store: createRedisStore({ url: r.url, prefix: r.prefix, nodeLeaseMs: NODE_LEASE_MS, pollIntervalMs: 20 }),
    });
    const errors: SessionError[] = [];
    engine.on('error', (error) => errors.push(error));
    const gate = deferred();
    const locked = deferred<string>();
    try {
      const lease = await engine.acquire({ sessionId: undefined, ip: IP });
      const id = lease.sessionId;
      let ended: Promise<void>;
      if (work === 'a spawned task') {
        const task = deferred();
        ended = task.promise;
        lease.proc.spawn('report', async (proc) => {
          assert.equal(await proc.locks.tryLock('Stock', 42), true);
          locked.resolve(proc.processId);
          await gate.promise;
          proc.vars.done = 'report';
          task.resolve();
        });
        lease.release();
      } else {
        assert.equal(await lease.run(() => lease.proc.locks.tryLock('Stock', 42)), true);
        locked.resolve(lease.proc.processId);
        ended = gate.promise.then(() => {
          lease.proc.vars.done = 'request';
          lease.release();
        });
      }
      const processId = await locked.promise;
      const keys = await keysOf(r.redis, r.prefix, id, processId);
      assert.equal(keys.length, 3, `the session hash, the process's lock set and its lock: ${keys.join(', ')}`);
      for (const key of keys) assert.equal(await r.redis.pexpire(key, CUT_TO_MS), 1, `${key} exists`);

      // Well past the cut life: every key must have been given a full lifetime again by then.
      assert.ok(await eventually(async () => {
        for (const key of keys) if (await r.redis.pttl(key) <= CUT_TO_MS) return false;
        return true;
      }, 3 * CUT_TO_MS), `renewed: ${JSON.stringify(await Promise.all(keys.map(async (k) => [k, await r.redis.pttl(k)])))}`);
      await new Promise((resolve) => setTimeout(resolve, CUT_TO_MS + 200));
      for (const key of keys) assert.ok(await r.redis.exists(key) === 1, `${key} still exists after the cut life ran out`);
      assert.deepEqual((await r.redis.hmget(`${r.prefix}lock:5:Stock:number:42`, 'processId'))[0], processId, 'the record is still locked by the working process');

      gate.resolve();
      await ended;
      // The task's process ends with its task (no hook for it): what it did stays in its own vars.
      if (work === 'a spawned task') assert.ok(await eventually(() => engine.sessionProcessCount(id) === 1), 'the task\'s process ended');
      assert.equal(await engine.closeSession(id), true, 'the session is still there to close');
      assert.deepEqual(hooked, [work === 'a spawned task' ? undefined : 'request'], 'one hook (the request\'s process), with what the work left');
    } finally {
      gate.resolve();
      await engine.stop();
    }
    assert.deepEqual(errors.map((e) => e.code), []);
  });
}
