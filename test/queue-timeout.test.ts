// A request waiting for its session's busy process waits at most queueTimeoutMs (spec edge case 15: a
// FIFO queue with a timeout that answers 503), on both stores, timed by the engine's clock: then it is
// refused with ERR_SESSION_QUEUE_TIMEOUT (503), leaves the queue, and the session is untouched.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine } from '../src/index.js';
import { track } from './engine-harness.js';
import { eventually, settle } from './helpers.js';
import { storeChoices } from './store-choices.js';

type Vars = { n?: number };
const IP = '127.0.0.1';
const QUEUE_TIMEOUT_MS = 10_000;

const stores = storeChoices({ pollIntervalMs: 5 });

for (const [name, storeFor] of stores) {
  test(`${name}: a request queued behind a busy process is refused after queueTimeoutMs on the clock (503 ERR_SESSION_QUEUE_TIMEOUT), not before; the session is untouched and serves the next request`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const engine = new SessionEngine<Vars>({ clock, queueTimeoutMs: QUEUE_TIMEOUT_MS, ...choice.options });
    try {
      const busy = await engine.acquire({ sessionId: undefined, ip: IP });
      busy.proc.vars.n = 1;
      // The deadlines are set when a request begins to wait (on Redis, after its enter's reply).
      const queued = (): number => [...engine.sessions()].find((s) => s.id === busy.sessionId)?.queuedRequests ?? 0;
      const first = track(engine.acquire({ sessionId: busy.sessionId, ip: IP }));
      assert.ok(await eventually(() => queued() === 1, 5_000));
      clock.advance(QUEUE_TIMEOUT_MS / 2);
      const second = track(engine.acquire({ sessionId: busy.sessionId, ip: IP }));
      assert.ok(await eventually(() => queued() === 2, 5_000));
      clock.advance(QUEUE_TIMEOUT_MS / 2 - 1);
      await settle(20);
      assert.equal(first.settled, false, 'not before its timeout');
      clock.advance(1);
      assert.ok(await eventually(() => first.settled, 5_000));
      assert.equal((first.error as { code?: string } | undefined)?.code, 'ERR_SESSION_QUEUE_TIMEOUT');
      assert.equal((first.error as { httpStatus?: number } | undefined)?.httpStatus, 503);
      assert.equal(second.settled, false, 'each request has its own deadline, from when it began to wait');
      busy.release();
      assert.ok(await eventually(() => second.settled, 5_000));
      const next = second.value!;
      assert.equal(next.sessionId, busy.sessionId, 'the session is untouched');
      assert.equal(next.proc.vars.n, 1);
      next.release();
      const stats = engine.stats();
      assert.equal(stats.rejected.queueTimeout, 1);
      assert.equal(stats.closed.closed + stats.closed.evicted + stats.closed.timeout, 0);
    } finally {
      await engine.stop();
    }
  });
}

for (const [name, storeFor] of stores) {
  test(`${name}: requests queued in a session that closes move to the session that follows it, and wait there for the rest of their queueTimeoutMs, not a new one`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const engine = new SessionEngine<Vars>({ clock, queueTimeoutMs: QUEUE_TIMEOUT_MS, ...choice.options });
    const leases: { release(): void }[] = [];
    try {
      const busy = await engine.acquire({ sessionId: undefined, ip: IP });
      const first = track(engine.acquire({ sessionId: busy.sessionId, ip: IP }));
      const second = track(engine.acquire({ sessionId: busy.sessionId, ip: IP }));
      const queued = (): number => [...engine.sessions()].find((s) => s.id === busy.sessionId)?.queuedRequests ?? 0;
      assert.ok(await eventually(() => queued() === 2, 5_000), 'both wait (their deadlines set)');
      clock.advance(QUEUE_TIMEOUT_MS * 0.6);
      const closed = engine.closeSession(busy.sessionId);
      busy.release();
      await closed;
      assert.ok(await eventually(() => first.settled, 5_000), 'the first waiter runs in the session that follows');
      const successor = first.value!;
      leases.push(successor);
      assert.notEqual(successor.sessionId, busy.sessionId);
      await settle(20);
      assert.equal(second.settled, false, 'the second waits behind it');
      clock.advance(QUEUE_TIMEOUT_MS * 0.4 - 1);
      await settle(20);
      assert.equal(second.settled, false, 'not before its timeout');
      clock.advance(1);
      assert.ok(await eventually(() => second.settled, 5_000), 'refused at queueTimeoutMs from when it began to wait');
      assert.equal((second.error as { code?: string } | undefined)?.code, 'ERR_SESSION_QUEUE_TIMEOUT');
      assert.equal(engine.stats().rejected.queueTimeout, 1);
    } finally {
      for (const lease of leases) lease.release();
      await engine.stop();
    }
  });
}

test('queueTimeoutMs is an option like the others: validated, readable, settable at run time', () => {
  const engine = new SessionEngine();
  assert.equal(engine.getOption('queueTimeoutMs'), 30_000);
  engine.setOption('queueTimeoutMs', 5_000);
  assert.equal(engine.getOption('queueTimeoutMs'), 5_000);
  assert.throws(() => engine.setOption('queueTimeoutMs', 0), { code: 'ERR_SESSION_INVALID_OPTION' });
  assert.throws(() => new SessionEngine({ queueTimeoutMs: -1 }), { code: 'ERR_SESSION_INVALID_OPTION' });
});

test('memory store: a waiter taken off the queue for a process of its own (room made at the process cap), whose init outlasts its deadline, gets that process; nothing is left running for nobody', { timeout: 10_000 }, async () => {
  const clock = new ManualClock();
  let finishInit: (() => void) | undefined;
  let slowInit = false;
  const engine = new SessionEngine<Vars>({
    clock, queueTimeoutMs: 1_000, maxConcurrentProcesses: 10, processesPerSession: 2, inactiveProcessTimeoutMs: 60_000,
    init: () => (slowInit ? new Promise<Vars>((resolve) => { finishInit = () => resolve({}); }) : {}),
  });
  try {
    const first = await engine.acquire({ sessionId: undefined, ip: IP });
    for (let i = 0; i < 9; i++) (await engine.acquire({ sessionId: undefined, ip: IP })).release();
    slowInit = true;
    const waiting = track(engine.acquire({ sessionId: first.sessionId, ip: IP }));
    await settle(20);
    engine.setOption('maxConcurrentProcesses', 11); // room: the waiter's own process starts, its init pending
    await settle(20);
    assert.ok(finishInit !== undefined, 'the waiter\'s process is being made');
    clock.advance(1_000);
    await settle(20);
    assert.equal(waiting.settled, false, 'taken before its deadline: it waits for its process, not refused');
    finishInit!();
    assert.ok(await eventually(() => waiting.settled, 2_000));
    assert.equal(waiting.error, undefined);
    waiting.value!.release();
    first.release();
    assert.equal(engine.sessions().find((s) => s.id === first.sessionId)?.busy, false, 'no process left running for nobody');
    clock.advance(61_000);
    assert.ok(await eventually(() => engine.stats().closed.timeout === 10, 2_000), 'every session times out, that one too');
  } finally {
    await engine.stop();
  }
});

test('memory store: a queued request refused at its timeout does not extend the cookie; one that gets its turn extends it from when it came', { timeout: 10_000 }, async () => {
  const clock = new ManualClock();
  const engine = new SessionEngine<Vars>({ clock, queueTimeoutMs: QUEUE_TIMEOUT_MS });
  try {
    const busy = await engine.acquire({ sessionId: undefined, ip: IP });
    const before = engine.sessionExpiration(busy.sessionId)?.getTime();
    clock.advance(1_000);
    const refused = engine.acquire({ sessionId: busy.sessionId, ip: IP });
    refused.catch(() => {});
    assert.equal(engine.sessionExpiration(busy.sessionId)?.getTime(), before, 'waiting extends nothing');
    clock.advance(QUEUE_TIMEOUT_MS);
    await assert.rejects(refused, { code: 'ERR_SESSION_QUEUE_TIMEOUT' });
    assert.equal(engine.sessionExpiration(busy.sessionId)?.getTime(), before, 'refused: nothing extended');
    const cameAtMs = clock.now();
    const served = engine.acquire({ sessionId: busy.sessionId, ip: IP });
    clock.advance(1_000);
    busy.release();
    const lease = await served;
    assert.equal(engine.sessionExpiration(busy.sessionId)?.getTime(), cameAtMs + engine.getOption('inactiveSessionTimeoutMs'), 'served: from when it came');
    lease.release();
  } finally {
    await engine.stop();
  }
});
