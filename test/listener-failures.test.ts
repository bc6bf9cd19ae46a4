// An application's event listener that throws ('create', 'close', 'option', 'error') runs inside the
// engine's own work: its throw is reported, never passed on, and that work goes to its end (a close
// releases its locks, a timeout is no crash, an option change reaches the store). The engine calls its
// listeners itself (engine-reports.ts), so what emit() gave an application is checked too (errorMonitor).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { errorMonitor } from 'node:events';
import { ManualClock, SessionEngine, type SessionError } from '../src/index.js';
import { eventually, settle } from './helpers.js';

const IP = '127.0.0.1';
const RECORD = { table: 'orders', key: 7 };

function collectWarnings(): { warnings: Error[]; stop(): void } {
  const warnings: Error[] = [];
  const listener = (warning: Error): void => { warnings.push(warning); };
  process.on('warning', listener);
  return { warnings, stop: () => process.off('warning', listener) };
}

test("an 'error' listener that throws, on a failing onClose: the close goes on (teardown, locks released, closed) and the listener's throw becomes a process warning", { timeout: 10_000 }, async () => {
  const engine = new SessionEngine({ onClose: () => { throw new Error('hook fails'); } });
  engine.on('error', () => { throw new Error('bug in the error logger'); });
  const seen = collectWarnings();
  try {
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    assert.equal(await lease.proc.locks.tryLock(RECORD.table, RECORD.key), true);
    const id = lease.sessionId;
    lease.release();
    assert.equal(await engine.closeSession(id), true);
    assert.equal(await engine.lockManager.lockedBy(RECORD), null, 'the teardown released the lock');
    assert.equal(engine.stats().closingSessions, 0);
    assert.equal(engine.stats().hookErrors, 1);
    assert.ok(await eventually(() => seen.warnings.length > 0));
    const warning = seen.warnings[0] as SessionError;
    assert.equal(warning.code, 'ERR_SESSION_HANDLER_FAILED');
    assert.match(warning.message, /'error' listener threw on ERR_SESSION_HOOK_FAILED/);
    assert.equal((warning.cause as Error).message, 'bug in the error logger');
    await engine.stop();
  } finally {
    seen.stop();
  }
});

test("a 'close' listener that throws: a timeout is no crash, closeSession and stop() resolve, and the throw is reported as ERR_SESSION_HANDLER_FAILED", { timeout: 10_000 }, async () => {
  const clock = new ManualClock();
  const engine = new SessionEngine({ clock, inactiveProcessTimeoutMs: 1_000 });
  const errors: SessionError[] = [];
  engine.on('error', (error) => errors.push(error));
  let closes = 0;
  engine.on('close', () => { closes++; throw new Error('bug in the metrics listener'); });
  (await engine.acquire({ sessionId: undefined, ip: IP })).release();
  const second = await engine.acquire({ sessionId: undefined, ip: IP });
  const secondId = second.sessionId;
  second.release();
  clock.advance(999);
  (await engine.acquire({ sessionId: secondId, ip: IP })).release(); // keeps the second one alive
  clock.advance(1);
  assert.ok(await eventually(() => closes === 1), 'the first timed out');
  assert.equal(await engine.closeSession(secondId), true);
  assert.equal(closes, 2);
  const third = await engine.acquire({ sessionId: undefined, ip: IP });
  third.release();
  await engine.stop();
  assert.equal(closes, 3);
  assert.deepEqual(errors.map((e) => [e.code, (e.cause as Error).message]), Array(3).fill(['ERR_SESSION_HANDLER_FAILED', 'bug in the metrics listener']));
  assert.equal(engine.stats().handlerErrors, 3);
});

test("an 'option' listener that throws: setOption applies in full (a lowered timeout closes the idle session) and does not throw; the throw is reported", { timeout: 10_000 }, async () => {
  const clock = new ManualClock();
  const engine = new SessionEngine({ clock });
  const errors: SessionError[] = [];
  engine.on('error', (error) => errors.push(error));
  const lease = await engine.acquire({ sessionId: undefined, ip: IP });
  lease.release();
  clock.advance(300);
  engine.on('option', () => { throw new Error('bug in the option listener'); });
  engine.setOption('inactiveProcessTimeoutMs', 100);
  assert.equal(engine.getOption('inactiveProcessTimeoutMs'), 100);
  await settle(10);
  clock.advance(0);
  assert.ok(await eventually(() => engine.stats().closed.timeout === 1), 'the store heard of the change: the session past the new timeout closed');
  assert.deepEqual(errors.map((e) => e.code), ['ERR_SESSION_HANDLER_FAILED']);
  await engine.stop();
});

test("an events.errorMonitor listener hears every report, before the 'error' listeners, as emit('error') does", { timeout: 10_000 }, async () => {
  const engine = new SessionEngine({ clock: new ManualClock() });
  const heard: string[] = [];
  engine.on('error', (error) => heard.push(`error ${error.code}`));
  // The typed on() names the engine's own events: a monitor is added as on any EventEmitter.
  engine.on(errorMonitor, (error) => heard.push(`monitor ${error.code}`));
  engine.on('create', () => { throw new Error('create listener'); });
  const lease = await engine.acquire({ sessionId: undefined, ip: IP });
  lease.release();
  await engine.stop();
  assert.deepEqual(heard, ['monitor ERR_SESSION_HANDLER_FAILED', 'error ERR_SESSION_HANDLER_FAILED']);
});
