// A session whose extra process's asynchronous init fails after the session's other request ended goes
// back to the idle list: its place there must match its last activity, or the inactivity timeout fires
// late (DESIGN: "fired by a timer, ≤ 1 s late") and eviction picks a more recently active session
// (invariant 5). Memory store.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type CloseReason } from '../src/index.js';
import { deferred, engineWithErrors, settle } from './helpers.js';

const MINUTE = 60_000;
const GUARD = { timeout: 5_000 };

function setup(options: { maxSessions?: number } = {}) {
  const clock = new ManualClock();
  const t0 = clock.now();
  const closes: Array<{ id: string; reason: CloseReason; atMin: number }> = [];
  let pendingInit: ReturnType<typeof deferred<never>> | undefined;
  const { engine } = engineWithErrors({
    clock, processesPerSession: 2, inactiveProcessTimeoutMs: 60 * MINUTE, ...options,
    init: () => (pendingInit === undefined ? {} : pendingInit.promise),
    onClose: (proc, reason) => { closes.push({ id: proc.sessionId, reason, atMin: (clock.now() - t0) / MINUTE }); },
  });
  /** Session A: its request ends at minute 10, while a second request's init (a second process) is pending until minute 20 and then fails. Session B goes idle at minute 15. */
  async function scenario(): Promise<{ a: string; b: string }> {
    const a1 = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
    const failing = deferred<never>();
    failing.promise.catch(() => {});
    pendingInit = failing;
    const second = engine.acquire({ ip: '127.0.0.1', sessionId: a1.sessionId }).then((lease) => { lease.release(); return 'ran'; }, (error: { code?: string }) => error.code);
    pendingInit = undefined;
    await settle();
    clock.advance(10 * MINUTE);
    a1.release();
    clock.advance(5 * MINUTE);
    const b = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
    b.release();
    clock.advance(5 * MINUTE);
    failing.reject(new Error('init failed'));
    assert.equal(await second, 'ERR_SESSION_INIT_FAILED');
    await settle();
    return { a: a1.sessionId, b: b.sessionId };
  }
  return { clock, engine, closes, scenario, t0 };
}

test('after an extra process\'s async init fails, the session times out on the deadline its last activity gives, not behind a session idle since later', GUARD, async () => {
  const { clock, engine, closes, scenario, t0 } = setup();
  try {
    const { a, b } = await scenario();
    const lastActivityMin = (engine.sessions().find((s) => s.id === a)!.lastActivityAt.getTime() - t0) / MINUTE;
    const deadlineMin = lastActivityMin + 60;
    clock.advance((deadlineMin - 20) * MINUTE);
    await settle();
    assert.deepEqual(closes.filter((c) => c.id === a).map((c) => c.atMin), [deadlineMin], `A (last activity at minute ${lastActivityMin}) must time out at minute ${deadlineMin}`);
    clock.advance(80 * MINUTE);
    await settle();
    assert.deepEqual(closes.map((c) => (c.id === a ? 'A' : c.id === b ? 'B' : '?')), lastActivityMin < 15 ? ['A', 'B'] : ['B', 'A'], 'timeouts in order of last activity');
  } finally {
    await engine.stop();
  }
});

test('after an extra process\'s async init fails, eviction still picks the least recently active idle session by lastActivityAt', GUARD, async () => {
  const { engine, closes, scenario, t0 } = setup({ maxSessions: 2 });
  try {
    const { a, b } = await scenario();
    const infos = engine.sessions();
    const lastA = infos.find((s) => s.id === a)!.lastActivityAt.getTime();
    const lastB = infos.find((s) => s.id === b)!.lastActivityAt.getTime();
    const expected = lastA < lastB ? a : b;
    const c = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
    c.release();
    await settle();
    assert.deepEqual(closes.map((x) => x.id), [expected], `evicted ${closes[0]?.id === a ? 'A' : 'B'}; lastActivityAt A=${(lastA - t0) / MINUTE} min, B=${(lastB - t0) / MINUTE} min`);
  } finally {
    await engine.stop();
  }
});
