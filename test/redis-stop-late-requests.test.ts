// Requests that would start on a Redis node whose stop() gave up on them (onStop 'auto', another node
// alive: the sessions stay): the stop's drain ends at closeTimeoutMs and the node leaves, Redis freeing
// its processes, so another node may take them. A request whose init ends, or whose enter's reply is
// read, after that must not start there (ERR_SESSION_STOPPED): it would run beside the other node's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type RequestLease } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { track } from './engine-harness.js';
import { eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { holdEnterReplies, IP, node, stopAll, settledAsTimePasses, wrapScript, type Vars } from './redis-crossing.js';

// A new session's first init outlasts the stop's drain.
test('a request whose init ends after its node stopped and left is refused (ERR_SESSION_STOPPED), not started beside another node\'s request of the same process', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  let slowInit: ((vars: Vars) => void) | undefined;
  const x = await node(r, clock, { init: () => new Promise<Vars>((resolve) => { slowInit = resolve; }) });
  const y = await node(r, clock);
  const leases: (RequestLease<Vars> | undefined)[] = [];
  try {
    await y.engine.acquire({ sessionId: undefined, ip: IP }).then((l) => l.release()); // y has joined
    const outcome = x.engine.acquire({ sessionId: undefined, ip: IP }).then((lease) => { leases.push(lease); return 'started'; }, (error: { code?: string }) => error.code);
    assert.ok(await eventually(() => slowInit !== undefined, 5_000), 'init runs');
    const id = x.engine.sessions()[0]!.id;
    const stopping = track(x.engine.stop());
    assert.ok(await settledAsTimePasses(clock, stopping), 'the stop gave up on the init at its bound and x left');
    slowInit!({});
    assert.equal(await outcome, 'ERR_SESSION_STOPPED', 'the request does not start on a node that left');
    assert.equal(x.engine.stats().rejected.stopped, 1);
    // The process is y's to give now: a request of the session runs there, alone.
    const onY = await y.engine.acquire({ sessionId: id, ip: IP });
    leases.push(onY);
    assert.equal(onY.sessionId, id, 'the session stayed (another node is alive)');
  } finally {
    await stopAll(clock, leases, undefined, x, y);
  }
});

// A request of a session with saved state (no init): its enter ran in Redis before the stop, its reply is
// read only after the stop's drain gave up on it and the node left. It must not start there (another
// node may take the process), as a request whose init ends then is refused since 5e628d8.
test('a request whose enter reply (restored state, no init) is read after its node stopped and left is refused, not started', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const x = await node(r, clock);
  const y = await node(r, clock);
  const leases: (RequestLease<Vars> | undefined)[] = [];
  try {
    await y.engine.acquire({ sessionId: undefined, ip: IP }).then((l) => l.release()); // y has joined
    const first = await x.engine.acquire({ sessionId: undefined, ip: IP });
    const id = first.sessionId;
    first.proc.vars.n = 1;
    first.release();
    assert.ok(await eventually(async () => (await r.redis.hget(`${r.prefix}s:${id}`, `b:${first.proc.processId}`)) === '0', 5_000), 'its state is saved');
    const hold = holdEnterReplies(x.client);
    const outcome = x.engine.acquire({ sessionId: id, ip: IP }).then((lease) => { leases.push(lease); return 'started'; }, (error: { code?: string }) => error.code);
    await hold.sent;
    const stopping = track(x.engine.stop());
    assert.ok(await settledAsTimePasses(clock, stopping), 'the stop gave up on the request at its bound and x left');
    hold.deliver();
    assert.equal(await outcome, 'ERR_SESSION_STOPPED', 'the request does not start on a node that left');
  } finally {
    await stopAll(clock, leases, undefined, x, y);
  }
});

// The init ends after the drain gave up (closeTimeoutMs) but while the stop still waits for saves to land
// (its second bound): retries have not stopped yet, so the request starts; then the saves land and the node
// leaves at once, the request still running there.
test('a request whose init ends after the drain gave up, while the stop waits for saves, is refused (the node leaves without waiting for it)', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  let slowInit: ((vars: Vars) => void) | undefined;
  const x = await node(r, clock, { init: () => (slowInit === undefined ? new Promise<Vars>((resolve) => { slowInit = resolve; }) : {}) });
  const y = await node(r, clock);
  const leases: (RequestLease<Vars> | undefined)[] = [];
  try {
    await y.engine.acquire({ sessionId: undefined, ip: IP }).then((l) => l.release()); // y has joined
    const outcome = x.engine.acquire({ sessionId: undefined, ip: IP }).then((lease) => { leases.push(lease); return 'started'; }, (error: { code?: string }) => error.code);
    assert.ok(await eventually(() => slowInit !== undefined, 5_000), 'init runs');
    // Another session's release on x whose reply is late: the stop's saves have not landed.
    const other = await x.engine.acquire({ sessionId: undefined, ip: IP });
    let answerRelease!: () => void;
    const releaseAnswered = new Promise<void>((resolve) => { answerRelease = resolve; });
    let releaseSent = false;
    wrapScript(x.client, 'lwsRelease', (release) => async (...args) => { const reply = release(...args); releaseSent = true; await releaseAnswered; return reply; });
    other.release();
    assert.ok(await eventually(() => releaseSent, 5_000));
    const stopping = track(x.engine.stop());
    // The drain's bound passes (the init still runs): ERR_SESSION_DRAIN_TIMEOUT.
    assert.ok(await eventually(() => { clock.advance(2_000); return x.errors.some((e) => e.code === 'ERR_SESSION_DRAIN_TIMEOUT'); }, 5_000), 'the drain gave up on the init');
    slowInit!({});
    const early = await Promise.race([outcome, new Promise((resolve) => setTimeout(resolve, 300, 'pending'))]);
    answerRelease();
    assert.ok(await settledAsTimePasses(clock, stopping), 'x stopped and left');
    assert.equal(early === 'pending' ? await outcome : early, 'ERR_SESSION_STOPPED', 'the request started on a node that then left without waiting for it');
  } finally {
    await stopAll(clock, leases, undefined, x, y);
  }
});

// The drainEnded check in initRequestProcess comes before its one round trip (sessionLeftRedis, asked
// when the session is closing): a request whose init ended before the drain gave up, but whose
// "has the session left Redis?" answer is read after, starts on the node that left.
test('a request whose init ends before its node\'s drain gave up, its lwsLeft answer (session closing elsewhere) read after, is refused, not started on the node that left', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  let slowInit: ((vars: Vars) => void) | undefined;
  const x = await node(r, clock, { init: () => new Promise<Vars>((resolve) => { slowInit = resolve; }) });
  // y's close waits for x's process far longer than x's drain (closeTimeoutMs 10 s there).
  const yClient = await r.client();
  const y = { engine: new SessionEngine<Vars>({ clock, closeTimeoutMs: 3_600_000, store: createRedisStore({ redis: yClient, prefix: r.prefix, pollIntervalMs: 5, sweepIntervalMs: 1_000 }) }), client: yClient, errors: [], hooked: [] };
  y.engine.on('error', () => {});
  const leases: (RequestLease<Vars> | undefined)[] = [];
  try {
    await y.engine.acquire({ sessionId: undefined, ip: IP }).then((l) => l.release()); // y has joined
    const outcome = x.engine.acquire({ sessionId: undefined, ip: IP }).then((lease) => { leases.push(lease); return 'started'; }, (error: { code?: string }) => error.code);
    assert.ok(await eventually(() => slowInit !== undefined, 5_000), 'init runs');
    const id = x.engine.sessions()[0]!.id;
    // y closes the session: its close waits for x's process; x hears 'c' (its handle is closing).
    const closing = track(y.engine.closeSession(id));
    assert.ok(await eventually(() => x.engine.sessions().length === 0, 5_000), 'x heard the close');
    // x's lwsLeft runs at once (the session has not left: y's close waits), its answer is read late.
    let answer!: () => void;
    const answered = new Promise<void>((resolve) => { answer = resolve; });
    let asked = false;
    wrapScript(x.client, 'lwsLeft', (left) => async (...args) => { const reply = await left(...args); asked = true; await answered; return reply; });
    const stopping = track(x.engine.stop());
    slowInit!({});
    assert.ok(await eventually(() => asked, 5_000), 'x asked whether the session left Redis');
    // x's drain gives up on the request (its timer is armed once x knows y is alive: time moves until then).
    assert.ok(await eventually(() => { clock.advance(10_001); return x.errors.some((e) => e.code === 'ERR_SESSION_DRAIN_TIMEOUT'); }, 5_000), 'x\'s drain ended');
    assert.ok(await eventually(() => stopping.settled, 5_000), 'x stopped and left');
    assert.equal(closing.settled, false, 'y\'s close still waits');
    answer();
    assert.equal(await outcome, 'ERR_SESSION_STOPPED', 'the request started on a node whose drain had ended (and that left)');
  } finally {
    await stopAll(clock, leases, undefined, x, y);
  }
});

// The same for a spawned task: its init ends after its node's drain gave up on it.
test('a spawned task whose init ends after its node\'s stop gave up on it does not run (ERR_SESSION_TASK_FAILED, caused by ERR_SESSION_STOPPED)', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  let slowInit: ((vars: Vars) => void) | undefined;
  let inits = 0;
  // The request's init answers at once; the task's (the second) is held.
  const x = await node(r, clock, { init: () => (++inits === 1 ? {} : new Promise<Vars>((resolve) => { slowInit = resolve; })) });
  const y = await node(r, clock);
  const leases: (RequestLease<Vars> | undefined)[] = [];
  try {
    await y.engine.acquire({ sessionId: undefined, ip: IP }).then((l) => l.release()); // y has joined
    const lease = await x.engine.acquire({ sessionId: undefined, ip: IP });
    let ran = false;
    lease.proc.spawn('report', async () => { ran = true; });
    lease.release();
    assert.ok(await eventually(() => slowInit !== undefined, 5_000), 'the task\'s init runs');
    const stopping = track(x.engine.stop());
    assert.ok(await eventually(() => { clock.advance(2_000); return x.errors.some((e) => e.code === 'ERR_SESSION_DRAIN_TIMEOUT'); }, 5_000), 'the drain gave up on the task');
    slowInit!({});
    assert.ok(await settledAsTimePasses(clock, stopping), 'x stopped and left');
    assert.ok(await eventually(() => x.errors.some((e) => e.code === 'ERR_SESSION_TASK_FAILED'), 5_000), 'the refusal is reported');
    assert.equal(ran, false, 'the task did not run on the node that left');
    const failure = x.errors.find((e) => e.code === 'ERR_SESSION_TASK_FAILED')!;
    assert.equal((failure.cause as { code?: string }).code, 'ERR_SESSION_STOPPED');
  } finally {
    await stopAll(clock, leases, undefined, x, y);
  }
});
