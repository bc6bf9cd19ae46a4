// Lost replies that meet a context: a process whose state was never saved, a release whose rename's reply
// was lost. The node's repair must keep what had a context (its hook and its locks with it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../src/index.js';
import { eventually } from './helpers.js';
import { idleSession, loseNextReply, loseRenameRepliesWithRedisSilent, pastTheGrace } from './lost-replies-support.js';
import { HeldMessages, IP, node, stopAll } from './redis-crossing.js';
import { redisForTest } from './redis-support.js';

for (const processesPerSession of [1, 2]) {
  test(`processesPerSession ${processesPerSession}: a process that had a context but no state saved (its state was not storable), taken by an enter whose reply is lost: the repair frees it and keeps the session, so its close hooks it and releases its lock`, { timeout: 20_000 }, async (t) => {
    const r = await redisForTest(t);
    if (r === undefined) return;
    const clock = new ManualClock();
    const x = await node(r, clock, { processesPerSession });
    try {
      const first = await x.engine.acquire({ sessionId: undefined, ip: IP });
      const id = first.sessionId;
      const victim = processesPerSession === 2 ? await x.engine.acquire({ sessionId: id, ip: IP }) : first;
      assert.equal(await victim.proc.locks.tryLock('Stock', 7), true);
      (victim.proc.vars as Record<string, unknown>).callback = () => 1; // not storable: its state is never saved
      victim.release();
      assert.ok(await eventually(() => x.errors.some((e) => e.code === 'ERR_SESSION_STATE_NOT_STORABLE'), 5_000));
      assert.ok(await eventually(async () => (await r.redis.hget(`${r.prefix}s:${id}`, `b:${victim.proc.processId}`)) === '0', 5_000), 'its release landed');
      loseNextReply(x.client, 'lwsEnterManyBuffer');
      await assert.rejects(x.engine.acquire({ sessionId: id, ip: IP }), { code: 'ERR_SESSION_STORE_UNAVAILABLE' });
      await pastTheGrace(clock);
      const pid = victim.proc.processId;
      assert.ok(await eventually(async () => (await r.redis.hget(`${r.prefix}s:${id}`, `b:${pid}`)) === '0', 5_000), 'the repair freed the process in its session, which lives on (its client has the cookie)');
      if (victim !== first) first.release();
      assert.equal(await x.engine.closeSession(id), true);
      assert.ok(x.hooked.includes(victim.proc.processId), 'its close hooks the process');
      const other = await x.engine.acquire({ sessionId: undefined, ip: IP });
      assert.equal(await other.proc.locks.lockedBy('Stock', 7), null, 'and releases its lock');
      other.release();
    } finally {
      await stopAll(clock, [], undefined, x);
    }
  });
}

test('a regenerate from a new session\'s first request whose reply is lost and Redis then silent: the request\'s release lands under the new id, with no forwarding key, so the repair keeps the session (its state saved, its lock its own)', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const held = new HeldMessages('N ', 'n ');
  held.on = true; // the rename's messages lost on their way here
  const x = await node(r, clock, { held });
  try {
    const lease = await x.engine.acquire({ sessionId: undefined, ip: IP });
    const oldId = lease.sessionId;
    assert.equal(await lease.proc.locks.tryLock('Stock', 9), true);
    lease.proc.vars.n = 1;
    const redisAnswers = loseRenameRepliesWithRedisSilent(x);
    await assert.rejects(lease.run(() => x.engine.regenerate(oldId)), { code: 'ERR_SESSION_STORE_UNAVAILABLE' });
    redisAnswers();
    // The request goes on: its lock calls find its process under the id the rename may have made (fenced
    // by its token there), as its release will.
    assert.equal(await lease.proc.locks.tryLock('Stock', 10), true, 'the request locks after its regenerate failed');
    assert.equal(await lease.proc.locks.unlock('Stock', 10), true, 'and unlocks');
    // However long Redis stayed away, nothing forwards the caller's release (a sign-in leaves no key behind):
    // it names the new id itself once the old one names nothing.
    assert.equal(await r.redis.exists(`${r.prefix}mv:${oldId}`), 0);
    lease.release();
    const [newKey] = await r.redis.keys(`${r.prefix}s:*`);
    assert.ok(newKey !== undefined);
    assert.ok(await eventually(async () => (await r.redis.hget(newKey, `b:${lease.proc.processId}`)) === '0', 5_000), 'the release landed under the new id');
    const other = await idleSession(r, x);
    loseNextReply(x.client, 'lwsEnterManyBuffer');
    await assert.rejects(x.engine.acquire({ sessionId: other.sessionId, ip: IP }), { code: 'ERR_SESSION_STORE_UNAVAILABLE' });
    await pastTheGrace(clock);
    assert.equal(await r.redis.exists(newKey), 1, 'the renamed session is kept by the repair');
    assert.equal((await other.proc.locks.lockedBy('Stock', 9))?.processId, lease.proc.processId);
  } finally {
    await stopAll(clock, [], undefined, x);
  }
});

test('a regenerate retried after its first reply was lost and Redis silent, the retry lost too: the request\'s release still lands in the session the first one renamed', { timeout: 30_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const held = new HeldMessages('N ', 'n ');
  held.on = true;
  const x = await node(r, clock, { held });
  try {
    const lease = await x.engine.acquire({ sessionId: undefined, ip: IP });
    const oldId = lease.sessionId;
    assert.equal(await lease.proc.locks.tryLock('Stock', 9), true);
    const redisAnswers = loseRenameRepliesWithRedisSilent(x);
    // The first renames the session; the second finds the old id dead.
    for (let i = 0; i < 2; i++) await assert.rejects(lease.run(() => x.engine.regenerate(oldId)), { code: 'ERR_SESSION_STORE_UNAVAILABLE' });
    redisAnswers();
    const keys = await r.redis.keys(`${r.prefix}s:*`);
    assert.equal(keys.length, 1);
    lease.release();
    assert.ok(await eventually(async () => (await r.redis.hget(keys[0]!, `b:${lease.proc.processId}`)) === '0', 5_000), 'the release landed under the first new id');
  } finally {
    await stopAll(clock, [], undefined, x);
  }
});
