// Stops, waits and renames that cross an enter or an announcement (helpers and method:
// test/redis-crossing.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type RequestLease } from '../src/index.js';
import { track } from './engine-harness.js';
import { eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { countMulti, HeldMessages, holdEnterReplies, idleInRedis, IP, node, sessionKeys, stopAll, turnsOfTheLoop, wrapScript, type Script, type Vars } from './redis-crossing.js';

// Stops: a request whose enter left before the stop began is the stop's to drain, not to leave behind.

test('stop() while an enter is on its way (onStop keep): the node does not leave before that request ends; the request runs, is saved and its process freed', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const x = await node(r, clock, { onStop: 'keep' });
  let b: RequestLease<Vars> | undefined;
  let stopping: ReturnType<typeof track<void>> | undefined;
  try {
    const first = await x.engine.acquire({ sessionId: undefined, ip: IP });
    first.proc.vars.n = 1;
    first.release();
    assert.ok(await idleInRedis(r, first.sessionId));
    const leaves = countMulti(x.client);
    const hold = holdEnterReplies(x.client);
    const entering = x.engine.acquire({ sessionId: first.sessionId, ip: IP });
    await hold.sent;
    stopping = track(x.engine.stop());
    await turnsOfTheLoop(5); // what the stop does without waiting is done by now
    assert.equal(leaves.calls, 0, 'the node has not left the cluster while a request it took is on its way in');
    hold.deliver();
    b = await entering;
    assert.equal(b.sessionId, first.sessionId);
    assert.equal(b.proc.signal.aborted, false, "onStop 'keep' closes nothing");
    assert.equal(b.proc.vars.n, 1);
    b.proc.vars.n = 2;
    assert.equal(stopping.settled, false, 'the stop drains the request');
    b.release();
    await x.engine.stop();
    assert.equal(leaves.calls, 1);
    assert.ok(await idleInRedis(r, first.sessionId), 'its process is free in Redis');
    // Another node finds the state the request left.
    const y = await node(r, new ManualClock(), { onStop: 'keep' });
    const c = await y.engine.acquire({ sessionId: first.sessionId, ip: IP });
    assert.equal(c.sessionId, first.sessionId);
    assert.equal(c.proc.vars.n, 2);
    c.release();
    await y.engine.stop();
    assert.deepEqual(y.errors.map((e) => e.message), []);
  } finally {
    await stopAll(clock, [b], stopping, x);
  }
  assert.deepEqual(x.errors.map((e) => e.message), []);
});

test('stop() while the enter of a closed session\'s cookie is on its way: its reply (no such session) comes after the stop began, so the request is refused (ERR_SESSION_STOPPED) and no session is made', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const x = await node(r, clock);
  try {
    const first = await x.engine.acquire({ sessionId: undefined, ip: IP });
    first.release();
    assert.equal(await x.engine.closeSession(first.sessionId), true);
    assert.deepEqual(await sessionKeys(r), []);
    const hold = holdEnterReplies(x.client);
    const entering = x.engine.acquire({ sessionId: first.sessionId, ip: IP });
    entering.catch(() => {});
    await hold.sent;
    const stopping = x.engine.stop();
    await turnsOfTheLoop(5);
    hold.deliver();
    await assert.rejects(entering, { code: 'ERR_SESSION_STOPPED' });
    await stopping;
    assert.deepEqual(await sessionKeys(r), [], 'no session was made after the stop began');
  } finally {
    await x.engine.stop();
  }
  assert.deepEqual(x.errors.map((e) => e.message), []);
});

// Waits.

test("an enter answered 'busy' after the process was released while it was on its way: the request tries again at once instead of waiting a poll for the wake it missed", { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  // Polls a minute apart: a request that missed its wake would wait that long.
  const x = await node(r, clock, { pollIntervalMs: 60_000 });
  let waiting: ReturnType<typeof track<RequestLease<Vars>>> | undefined;
  try {
    const first = await x.engine.acquire({ sessionId: undefined, ip: IP });
    first.release();
    assert.ok(await idleInRedis(r, first.sessionId));
    const a = await x.engine.acquire({ sessionId: first.sessionId, ip: IP });
    a.proc.vars.n = 1;
    const hold = holdEnterReplies(x.client);
    waiting = track(x.engine.acquire({ sessionId: first.sessionId, ip: IP }));
    await hold.sent; // Redis has found the process busy
    a.release();
    assert.ok(await idleInRedis(r, first.sessionId));
    await turnsOfTheLoop(5); // the release's reply has been read and its wake given (to nobody yet)
    hold.deliver();
    assert.ok(await eventually(() => waiting!.settled, 5_000), 'the request got the process well before the next poll');
    assert.equal(waiting.value?.sessionId, first.sessionId);
    assert.equal(waiting.value?.proc.vars.n, 1);
    waiting.value?.release();
  } finally {
    if (waiting?.settled !== true) clock.advance(60_000);
    await x.engine.stop();
  }
  assert.deepEqual(x.errors.map((e) => e.message), []);
});

// Renames.

test('regenerate not awaited by its request: the request\'s release waits for the rename\'s reply and lands under the new id (the process is freed, the next request enters at once)', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const x = await node(r, clock);
  let next: ReturnType<typeof track<RequestLease<Vars>>> | undefined;
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    a.proc.vars.n = 1;
    let renaming: Promise<string | null> | undefined;
    a.run(() => { renaming = x.engine.regenerate(x.engine.currentSessionId()); });
    a.release(); // the handler ended without waiting for the rename
    const newId = await renaming!;
    assert.equal(typeof newId, 'string');
    assert.ok(await idleInRedis(r, newId!), 'the process is free under the new id');
    next = track(x.engine.acquire({ sessionId: newId!, ip: IP }));
    assert.ok(await eventually(() => next!.settled, 5_000), 'the next request does not wait for a release that went to the old id');
    assert.equal(next.value?.sessionId, newId);
    assert.equal(next.value?.proc.vars.n, 1);
    next.value?.release();
  } finally {
    if (next?.settled !== true) clock.advance(60_000);
    await x.engine.stop();
  }
  assert.deepEqual(x.errors.map((e) => e.message), []);
});

test('regenerate not awaited, then a task spawned by the same request: the task runs in the renamed session (its spawn waits for the rename\'s reply; nothing forwards the old id for the caller)', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const x = await node(r, clock);
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    const oldId = a.sessionId;
    let renaming: Promise<string | null> | undefined;
    let ranIn: string | undefined;
    a.run(() => {
      renaming = x.engine.regenerate(oldId);
      a.proc.spawn('mail', async () => { ranIn = x.engine.currentSessionId(); });
    });
    const newId = await renaming!;
    assert.equal(typeof newId, 'string');
    assert.equal(await r.redis.exists(`${r.prefix}mv:${oldId}`), 0, 'a sign-in leaves no forwarding key');
    assert.ok(await eventually(() => ranIn !== undefined, 5_000), `the task ran (errors: ${x.errors.map((e) => e.code).join(', ')})`);
    assert.equal(ranIn, newId);
    a.release();
    assert.ok(await idleInRedis(r, newId!));
  } finally {
    await x.engine.stop();
  }
  assert.deepEqual(x.errors.map((e) => e.code), []);
});

test('a regenerate whose lock relabelling fails (Redis away for that one call) still answers the new id, which the session has: the failure is reported, the lock stays its process\'s, and the next regenerate relabels it', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const x = await node(r, clock);
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    assert.equal(await a.proc.locks.tryLock('Stock', 3), true);
    let failures = 1;
    wrapScript(x.client, 'lwsLockRename', (rename: Script) => async (...args) => {
      if (failures-- > 0) throw new Error('Connection is closed.');
      return rename(...args);
    });
    const oldId = a.sessionId;
    const newId = await a.run(() => x.engine.regenerate(oldId));
    assert.equal(typeof newId, 'string');
    assert.equal(a.sessionId, newId, 'the request goes on under the new id');
    assert.deepEqual(x.errors.map((e) => e.code), ['ERR_SESSION_STORE_UNAVAILABLE']);
    const holder = async (): Promise<unknown> => {
      const found = await a.proc.locks.lockedBy('Stock', 3);
      return found && { sessionId: found.sessionId, processId: found.processId };
    };
    try {
      assert.deepEqual(await holder(), { sessionId: oldId, processId: a.proc.processId }, 'held by its process, labelled with the id it had');
      const later = await a.run(() => x.engine.regenerate(newId!));
      assert.deepEqual(await holder(), { sessionId: later, processId: a.proc.processId });
    } finally {
      a.release();
    }
  } finally {
    await x.engine.stop();
  }
});

test('a release retried after its first try landed, its session since renamed on another node (no forwarding: only the caller was busy): the retry finds nothing and leaves the live session\'s lock alone', { timeout: 30_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const x = await node(r, clock);
  const y = await node(r, clock);
  let bl: RequestLease<Vars> | undefined;
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    const pid = a.proc.id;
    assert.equal(await a.proc.locks.tryLock('Stock', 8), true);
    let calls = 0;
    let open!: () => void;
    const gate = new Promise<void>((res) => { open = res; });
    const outcomes: unknown[] = [];
    wrapScript(x.client, 'lwsRelease', (release: Script) => async (...args) => {
      calls++;
      if (calls === 1) { await release(...args); throw new Error('Connection is closed.'); }
      if (calls === 2) await gate; // the retry, built with the old id, waits in the offline queue
      const out = await release(...args);
      outcomes.push(out);
      return out;
    });
    const oldId = a.sessionId;
    a.release();
    assert.ok(await idleInRedis(r, oldId), 'first try landed');
    assert.ok(await eventually(() => calls === 2, 10_000), 'the retry is on its way (built with the id X knew then)');
    // Y: the next request of the browser, same process, logs in (regenerate) and keeps its locks.
    const b = await y.engine.acquire({ sessionId: oldId, ip: IP });
    bl = b;
    assert.equal(b.proc.id, pid);
    const newId = await b.run(() => y.engine.regenerate(b.sessionId));
    assert.equal(typeof newId, 'string');
    assert.deepEqual(await b.proc.locks.lockedBy('Stock', 8).then((o) => o && { p: o.processId, s: o.sessionId }), { p: pid, s: newId });
    open();
    await eventually(() => outcomes.length > 0, 5_000);
    await new Promise((res) => setTimeout(res, 300));
    const holder = await b.proc.locks.lockedBy('Stock', 8);
    assert.notEqual(holder, null, 'the live session\'s lock was freed by a stale release of another node');
  } finally {
    await stopAll(clock, [bl], undefined, x, y);
  }
});

// closeSession(old id) from outside, on a node that hears of another node's rename late: the claim
// answers 'unknown' (the old id names nothing), which must neither clear the live session's cookie (the
// announcement not heard yet) nor close the renamed session (heard while the claim was on its way).
for (const heard of ['after the claim is answered', "during the claim's round trip"] as const) {
  test(`closeSession(old id) from outside on a node that hears of another node's rename ${heard}: false, the renamed session lives on (its running request keeps its cookie, under the new id), nothing is closed`, { timeout: 20_000 }, async (t) => {
    const r = await redisForTest(t);
    if (r === undefined) return;
    const clock = new ManualClock();
    const held = new HeldMessages('N ', 'n ');
    // 'keep': the stops at the end close nothing, so any hook would be the close under test.
    const x = await node(r, clock, { held, onStop: 'keep' });
    const y = await node(r, clock, { onStop: 'keep' });
    let a: RequestLease<Vars> | undefined;
    try {
      a = await x.engine.acquire({ sessionId: undefined, ip: IP });
      const running = a;
      const oldId = a.sessionId;
      held.on = true;
      const newId = await y.engine.regenerate(oldId);
      assert.equal(typeof newId, 'string');
      assert.ok(await eventually(() => held.count > 0, 5_000));
      if (heard !== 'after the claim is answered') {
        // The claim's reply is read only once x has heard of the rename.
        wrapScript(x.client, 'lwsClaim', (claim) => async (...args) => {
          const reply = await claim(...args);
          held.deliver();
          await eventually(() => running.sessionId === newId, 5_000);
          return reply;
        });
      }
      assert.equal(await x.engine.closeSession(oldId), false, 'the old id names nothing from outside');
      assert.equal(running.proc.signal.aborted, false);
      assert.equal(running.cookie().action, 'set', "the live session's cookie is not cleared");
      held.deliver();
      assert.ok(await eventually(() => running.sessionId === newId, 5_000), 'x hears of the rename');
      const cookie = running.cookie();
      assert.equal(cookie.action === 'set' ? cookie.sessionId : cookie.action, newId);
      assert.notEqual(x.engine.sessionExpiration(newId!), null);
      assert.equal(await r.redis.hget(`${r.prefix}s:${newId}`, 'st'), 'o');
      running.release();
      assert.ok(await idleInRedis(r, newId!));
      const b = await x.engine.acquire({ sessionId: newId!, ip: IP });
      assert.equal(b.sessionId, newId);
      assert.equal(b.cookie().action, 'set');
      b.release();
    } finally {
      held.deliver();
      a?.release();
      await Promise.all([x.engine.stop(), y.engine.stop()]);
    }
    assert.deepEqual([...x.errors, ...y.errors].map((e) => e.message), []);
    assert.deepEqual([...x.hooked, ...y.hooked], [], 'nothing was closed');
  });
}
