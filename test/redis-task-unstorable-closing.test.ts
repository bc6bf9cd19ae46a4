// A spawned task whose state cannot be stored ends while its session is closing in Redis (claimed by
// another node) but still open on this node (the 'c' announcement not heard yet): it leaves with an
// empty context, so the close hooks it once like every other process (invariant 1), and the failure
// to store its state is reported where it ran.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type RequestLease } from '../src/index.js';
import { track } from './engine-harness.js';
import { deferred, eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { claimAnswered, HeldMessages, IP, node, stopAll, type Vars } from './redis-crossing.js';

for (const value of ['a function (not storable)', 'a number (control)'] as const) {
  test(`redis: a task whose vars hold ${value} ends while another node closes its session: every process hooked once`, { timeout: 20_000 }, async (t) => {
    const r = await redisForTest(t);
    if (r === undefined) return;
    const clock = new ManualClock();
    const held = new HeldMessages('c ');
    const x = await node(r, clock, { held });
    const y = await node(r, clock);
    let lease: RequestLease<Vars> | undefined;
    let closing: ReturnType<typeof track<boolean>> | undefined;
    const gate = deferred();
    let taskPid = '';
    try {
      lease = await x.engine.acquire({ sessionId: undefined, ip: IP });
      const id = lease.sessionId;
      lease.run(() => {
        taskPid = lease!.proc.spawn('bad', async (p) => {
          p.vars.v = value.startsWith('a function') ? () => 1 : 1;
          await gate.promise;
        }).processId;
      });
      lease.release();
      assert.ok(await eventually(async () => ((await r.redis.hget(`${r.prefix}s:${id}`, 'pl')) ?? '').split(' ').length === 2, 5_000), 'the task is registered');
      held.on = true; // x does not hear of the close yet
      const claimed = claimAnswered(y.client);
      closing = track(y.engine.closeSession(id));
      await claimed;
      assert.equal(await r.redis.hget(`${r.prefix}s:${id}`, 'st'), 'c', 'closing in Redis');
      assert.notEqual(x.engine.sessionExpiration(id), null, 'still open on x');
      gate.resolve(); // the task ends on x
      assert.ok(await eventually(() => closing!.settled, 5_000), 'the close ends');
      held.deliver();
      if (value.startsWith('a function')) assert.deepEqual(x.errors.map((e) => e.code), ['ERR_SESSION_STATE_NOT_STORABLE']);
      assert.deepEqual([...y.hooked].sort(), [lease.proc.processId, taskPid].sort(), 'each process of the closed session hooked exactly once');
      assert.deepEqual(x.hooked, []);
    } finally {
      await stopAll(clock, [lease], closing, x, y);
    }
  });
}
