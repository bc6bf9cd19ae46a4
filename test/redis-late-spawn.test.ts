// A spawn Redis granted just before its session's close was claimed, its reply read by the spawning node
// only after that close had ended there ('x' heard): on the memory store a spawn in a closed session is
// refused and its task never runs. On Redis the task's process is a straggler from its first moment: its
// init and its task do not run (reported as a spawn refused in a closed session is), and nothing of it
// is left (vars reset, no lock, no key).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type RequestLease, type WebProcess } from '../src/index.js';
import { track } from './engine-harness.js';
import { deferred, eventually, settle } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { HeldMessages, IP, node, sessionKeys, settledAsTimePasses, stopAll, wrapScript, type Vars } from './redis-crossing.js';

test('memory store, for comparison: a spawn from a process of a closed session is refused, its task never runs', { timeout: 10_000 }, async () => {
  const engine = new SessionEngine<Vars>({});
  const lease = await engine.acquire({ sessionId: undefined, ip: IP });
  let ran = false;
  await lease.run(() => engine.closeSession(engine.currentSessionId()));
  assert.throws(() => lease.proc.spawn('bg', async () => { ran = true; }), { code: 'ERR_SESSION_CLOSED' });
  lease.release();
  await engine.stop();
  assert.equal(ran, false);
});

test('redis: a spawn whose reply is read after its node heard the close end (x): neither init nor the task runs, the refusal is reported, and the process is left reset with nothing in Redis', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const seen = new HeldMessages();
  const inits: string[] = [];
  const x = await node(r, clock, { held: seen, init: (proc) => { inits.push((proc as WebProcess<Vars>).name); return { from: 'init' }; } });
  const y = await node(r, clock);
  const leases: (RequestLease<Vars> | undefined)[] = [];
  let closing: ReturnType<typeof track<boolean>> | undefined;
  const replyGate = deferred();
  try {
    const sent = deferred();
    wrapScript(x.client, 'lwsSpawn', (spawn) => async (...args) => {
      const reply = await spawn(...args);
      sent.resolve();
      await replyGate.promise;
      return reply;
    });
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(a);
    const id = a.sessionId;
    let ran = false;
    const taskProc = a.proc.spawn('bg', async (p) => {
      ran = true;
      await p.locks.tryLock('Stock', 42).catch(() => false);
    });
    await sent.promise; // Redis registered the task's process (busy)
    a.release();
    closing = track(y.engine.closeSession(id));
    assert.ok(await settledAsTimePasses(clock, closing!), 'the close gave up on the task and finished');
    assert.ok(await eventually(() => seen.seen.includes(`x ${id}`), 5_000), 'x heard the close end');
    replyGate.resolve();
    assert.ok(await eventually(() => x.errors.some((e) => e.code === 'ERR_SESSION_TASK_FAILED'), 5_000),
      `the late task is reported as refused (errors: ${x.errors.map((e) => e.code).join(', ')}; task ran ${ran}, inits ${inits.join(',')})`);
    await settle(20);
    assert.equal(ran, false, 'the task never ran in the closed session');
    assert.deepEqual(inits, ['web'], 'init never ran for the late task');
    assert.ok(taskProc.closed, 'its process is torn down');
    assert.deepEqual(taskProc.vars, {}, 'its vars stay reset');
    const failure = x.errors.find((e) => e.code === 'ERR_SESSION_TASK_FAILED')!;
    assert.equal((failure.cause as { code?: string } | undefined)?.code, 'ERR_SESSION_CLOSED');
    assert.deepEqual(x.errors.map((e) => e.code), ['ERR_SESSION_TASK_FAILED'], 'nothing else reported on x');
    assert.deepEqual(await r.redis.keys(`${r.prefix}lock:*`), [], 'no lock');
    assert.deepEqual(await sessionKeys(r), [], 'no session key');
  } finally {
    replyGate.resolve();
    await stopAll(clock, leases, closing, x, y);
  }
});
