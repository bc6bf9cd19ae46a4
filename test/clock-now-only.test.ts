// DESIGN.md §2 names the clock option `{ now(): number }`: a clock without `setTimer` must drive every
// deadline too. The engine then looks at it at least once a second on real timers, so these tests wait
// real time (bounded, about a second), which is what such a clock costs; ManualClock tests never wait.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SessionEngine, type CloseReason } from '../src/index.js';
import { eventually } from './helpers.js';
import { track } from './engine-harness.js';
import { storeChoices } from './store-choices.js';

const IP = '127.0.0.1';
type Vars = { n: number };

/** A clock with only `now()`, moved by hand. */
function nowOnlyClock(): { now(): number; advance(ms: number): void } {
  let nowMs = Date.UTC(2026, 0, 1);
  return { now: () => nowMs, advance: (ms) => { nowMs += ms; } };
}

test('a clock with only now(): an idle session times out when that clock passes its deadline, hook and all, and its id is dead after', { timeout: 10_000 }, async () => {
  const clock = nowOnlyClock();
  const closes: CloseReason[] = [];
  const engine = new SessionEngine<Vars>({ clock, init: () => ({ n: 0 }), inactiveProcessTimeoutMs: 60_000, inactiveSessionTimeoutMs: 24 * 3_600_000, onClose: (proc, reason) => { closes.push(reason); assert.equal(proc.vars.n, 1, 'context intact'); } });
  try {
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    lease.proc.vars.n = 1;
    lease.release();
    clock.advance(59_000);
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    assert.deepEqual(closes, [], 'not before its deadline');
    clock.advance(2_000);
    assert.ok(await eventually(() => closes.length === 1, 3_000), 'timed out within about a second of real time');
    assert.deepEqual(closes, ['timeout']);
    const next = await engine.acquire({ sessionId: lease.sessionId, ip: IP });
    assert.notEqual(next.sessionId, lease.sessionId);
    next.release();
  } finally {
    await engine.stop();
  }
});

test('a clock with only now(): a hook that never settles is given up at closeTimeoutMs on that clock, and a queued request at queueTimeoutMs', { timeout: 10_000 }, async () => {
  const clock = nowOnlyClock();
  // The first hook never settles; the others (stop's) return at once.
  let hooks = 0;
  const engine = new SessionEngine<Vars>({ clock, init: () => ({ n: 0 }), closeTimeoutMs: 30_000, queueTimeoutMs: 30_000, onClose: () => (hooks++ === 0 ? new Promise(() => {}) : undefined) });
  const errors: string[] = [];
  engine.on('error', (error) => errors.push(error.code));
  // The engine's timers are unref'ed (a server's socket keeps a real process alive): the test holds the loop.
  const alive = setInterval(() => {}, 100);
  try {
    const hooked = await engine.acquire({ sessionId: undefined, ip: IP });
    hooked.release();
    const closing = engine.closeSession(hooked.sessionId);
    const busy = await engine.acquire({ sessionId: undefined, ip: IP });
    const queued = engine.acquire({ sessionId: busy.sessionId, ip: IP });
    let closed = false;
    let refused = false;
    void closing.then(() => { closed = true; });
    queued.then((lease) => lease.release(), () => { refused = true; });
    // 29 s on the clock: neither deadline is due.
    for (let i = 0; i < 29; i++) clock.advance(1_000);
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    assert.deepEqual([closed, refused, errors], [false, false, []], 'nothing before the deadlines');
    assert.ok(await eventually(() => { clock.advance(1_000); return closed && refused; }, 4_000), 'both deadlines passed within about a second of real time');
    assert.equal(await closing, true, 'the close finished');
    assert.deepEqual(errors, ['ERR_SESSION_HOOK_TIMEOUT']);
    await assert.rejects(queued, { code: 'ERR_SESSION_QUEUE_TIMEOUT' });
    busy.release();
  } finally {
    await engine.stop();
    clearInterval(alive);
  }
});

test('a clock with only now() that stands still, or is set back: the bounds still come in real time (a stop with a hook that never settles ends)', { timeout: 10_000 }, async () => {
  for (const move of ['still', 'back'] as const) {
    const clock = nowOnlyClock();
    const errors: string[] = [];
    const engine = new SessionEngine<Vars>({ clock, closeTimeoutMs: 300, onClose: () => new Promise(() => {}) });
    engine.on('error', (error) => errors.push(error.code));
    (await engine.acquire({ sessionId: undefined, ip: IP })).release();
    const startedAtMs = performance.now();
    const stopping = engine.stop();
    if (move === 'back') clock.advance(-3_600_000);
    await stopping;
    assert.ok(performance.now() - startedAtMs < 3_000, `${move}: the stop ended on its real-time bound`);
    assert.deepEqual(errors, ['ERR_SESSION_HOOK_TIMEOUT'], move);
  }
});

for (const [name, storeFor] of storeChoices()) {
  test(`${name}: a clock with only now() that stands still bounds a queued request in real time, across the turns of its wait`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const clock = nowOnlyClock();
    const engine = new SessionEngine<Vars>({ ...choice.options, clock, queueTimeoutMs: 1_000, init: () => ({ n: 0 }) });
    const alive = setInterval(() => {}, 100);
    try {
      const holder = await engine.acquire({ sessionId: undefined, ip: IP });
      const first = engine.acquire({ sessionId: holder.sessionId, ip: IP });
      // The first waits (counted in the store, queued on this node) before the second comes: it is ahead.
      const queued = (): number => [...engine.sessions()].find((s) => s.id === holder.sessionId)?.queuedRequests ?? 0;
      assert.ok(await eventually(() => queued() === 1, 5_000), 'the first request waits');
      const startedAtMs = performance.now();
      const second = engine.acquire({ sessionId: holder.sessionId, ip: IP });
      second.then((lease) => lease.release(), () => {});
      holder.release();
      const entered = await first; // the first waiter keeps the process: the second waits turn after turn
      await assert.rejects(second, { code: 'ERR_SESSION_QUEUE_TIMEOUT' });
      assert.ok(performance.now() - startedAtMs < 4_000, `refused after ${Math.round(performance.now() - startedAtMs)} ms`);
      entered.release();
    } finally {
      await engine.stop();
      clearInterval(alive);
    }
  });
}

for (const [name, storeFor] of storeChoices()) {
  test(`${name}: a clock with only now() that stands still: a queued request moved to the session that follows its closed one is refused about queueTimeoutMs after it began to wait, not a new wait later`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const queueMs = 2_000;
    const engine = new SessionEngine<Vars>({ clock: nowOnlyClock(), queueTimeoutMs: queueMs, ...choice.options });
    const alive = setInterval(() => {}, 100);
    const leases: { release(): void }[] = [];
    try {
      const busy = await engine.acquire({ sessionId: undefined, ip: IP });
      const startedAtMs = performance.now();
      const first = track(engine.acquire({ sessionId: busy.sessionId, ip: IP }));
      const second = track(engine.acquire({ sessionId: busy.sessionId, ip: IP }));
      const queued = (): number => [...engine.sessions()].find((s) => s.id === busy.sessionId)?.queuedRequests ?? 0;
      assert.ok(await eventually(() => queued() === 2, 5_000));
      await new Promise((resolve) => setTimeout(resolve, queueMs * 0.6));
      const closed = engine.closeSession(busy.sessionId);
      busy.release();
      await closed;
      assert.ok(await eventually(() => first.settled, 5_000));
      if (first.value !== undefined) leases.push(first.value);
      assert.ok(await eventually(() => second.settled, 6_000));
      const waitedMs = performance.now() - startedAtMs;
      assert.equal((second.error as { code?: string } | undefined)?.code, 'ERR_SESSION_QUEUE_TIMEOUT');
      assert.ok(waitedMs < queueMs * 1.35, `refused ${Math.round(waitedMs)} ms after it began to wait (queueTimeoutMs ${queueMs})`);
    } finally {
      clearInterval(alive);
      for (const lease of leases) lease.release();
      await engine.stop();
    }
  });
}
