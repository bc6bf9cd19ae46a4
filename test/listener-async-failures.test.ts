// An application's async event listener ('create', 'close', 'option', 'error') that rejects: as for one
// that throws, its failure is reported (ERR_SESSION_HANDLER_FAILED, or a process warning for 'error'),
// never an unhandled rejection that takes the process down; so is one returning a promise whose then()
// throws, and one of an event Node emits itself ('removeListener').
import { test } from 'node:test';
import type { EventEmitter } from 'node:events';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type SessionError } from '../src/index.js';
import { eventually } from './helpers.js';

const IP = '127.0.0.1';

function collectUnhandled(): { reasons: unknown[]; stop(): void } {
  const reasons: unknown[] = [];
  const listener = (reason: unknown): void => { reasons.push(reason); };
  process.on('unhandledRejection', listener);
  return { reasons, stop: () => process.off('unhandledRejection', listener) };
}

test("async 'create', 'close' and 'option' listeners that reject are reported as ERR_SESSION_HANDLER_FAILED, never an unhandled rejection", { timeout: 10_000 }, async () => {
  const unhandled = collectUnhandled();
  try {
    const engine = new SessionEngine({ clock: new ManualClock() });
    const errors: SessionError[] = [];
    engine.on('error', (error) => errors.push(error));
    engine.on('create', async () => { throw new Error('async create listener'); });
    engine.on('close', async () => { throw new Error('async close listener'); });
    engine.on('option', async () => { throw new Error('async option listener'); });
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    lease.release();
    engine.setOption('maxSessions', 50);
    assert.equal(await engine.closeSession(lease.sessionId), true);
    assert.ok(await eventually(() => errors.length + unhandled.reasons.length >= 3), 'every rejection surfaced somewhere');
    assert.deepEqual(unhandled.reasons.map((r) => (r as Error).message), [], 'no unhandled rejection');
    assert.deepEqual(errors.map((e) => [e.code, (e.cause as Error).message]).sort(), [
      ['ERR_SESSION_HANDLER_FAILED', 'async close listener'],
      ['ERR_SESSION_HANDLER_FAILED', 'async create listener'],
      ['ERR_SESSION_HANDLER_FAILED', 'async option listener'],
    ]);
    assert.equal(engine.stats().handlerErrors, 3);
    await engine.stop();
  } finally {
    unhandled.stop();
  }
});

test("an async 'error' listener that rejects becomes a process warning, never an unhandled rejection", { timeout: 10_000 }, async () => {
  const unhandled = collectUnhandled();
  const warnings: Error[] = [];
  const onWarning = (warning: Error): void => { warnings.push(warning); };
  process.on('warning', onWarning);
  try {
    const engine = new SessionEngine({ clock: new ManualClock(), onClose: () => { throw new Error('hook fails'); } });
    engine.on('error', async () => { throw new Error('async error logger'); });
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    lease.release();
    assert.equal(await engine.closeSession(lease.sessionId), true);
    assert.ok(await eventually(() => warnings.some((w) => (w as SessionError).code === 'ERR_SESSION_HANDLER_FAILED') || unhandled.reasons.length > 0));
    assert.deepEqual(unhandled.reasons.map((r) => (r as Error).message), [], 'no unhandled rejection');
    await engine.stop();
  } finally {
    unhandled.stop();
    process.off('warning', onWarning);
  }
});

test("a listener returning a thenable whose then() throws is reported as ERR_SESSION_HANDLER_FAILED: the 'error' listener only ever gets SessionErrors", { timeout: 10_000 }, async () => {
  const unhandled = collectUnhandled();
  try {
    const engine = new SessionEngine({ clock: new ManualClock() });
    const errors: unknown[] = [];
    engine.on('error', (error) => { errors.push(error); });
    // A query-builder-like thenable: its then() runs the query, and a query that cannot be built throws there.
    engine.on('create', () => ({ then(): never { throw new Error('a thenable that throws'); } }) as unknown as void);
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    lease.release();
    assert.ok(await eventually(() => errors.length + unhandled.reasons.length >= 1), 'the failure surfaced somewhere');
    assert.deepEqual(unhandled.reasons, [], 'no unhandled rejection');
    assert.deepEqual(errors.map((e) => [(e as SessionError).code, ((e as SessionError).cause as Error | undefined)?.message]), [['ERR_SESSION_HANDLER_FAILED', 'a thenable that throws']]);
    assert.equal(engine.stats().handlerErrors, 1);
    await engine.stop();
  } finally {
    unhandled.stop();
  }
});

test("an 'error' listener returning a thenable whose then() throws becomes one process warning, never a loop of 'error' events", { timeout: 10_000 }, async () => {
  const warnings: Error[] = [];
  const onWarning = (warning: Error): void => { warnings.push(warning); };
  process.on('warning', onWarning);
  try {
    const engine = new SessionEngine({ clock: new ManualClock(), onClose: () => { throw new Error('hook fails'); } });
    const got: unknown[] = [];
    engine.on('error', (error) => { got.push(error); return { then(): never { throw new Error('a logger thenable that throws'); } } as unknown as void; });
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    lease.release();
    assert.equal(await engine.closeSession(lease.sessionId), true);
    assert.ok(await eventually(() => warnings.some((w) => ((w as SessionError).cause as Error | undefined)?.message === 'a logger thenable that throws')), 'a process warning');
    assert.deepEqual(got.map((e) => (e as SessionError).code), ['ERR_SESSION_HOOK_FAILED'], "the 'error' listener heard the hook's failure once, and nothing else");
    await engine.stop();
  } finally {
    process.off('warning', onWarning);
  }
});

test("a 'close' listener returning a promise whose then() throws is reported, and closeSession still resolves true", { timeout: 10_000 }, async () => {
  const engine = new SessionEngine({ clock: new ManualClock() });
  const errors: SessionError[] = [];
  engine.on('error', (error) => errors.push(error));
  // A promise decorated by an instrumentation layer whose then() fails.
  engine.on('close', () => Object.assign(Promise.resolve(), { then(): never { throw new Error('a decorated promise whose then throws'); } }));
  const lease = await engine.acquire({ sessionId: undefined, ip: IP });
  lease.release();
  const closed = await engine.closeSession(lease.sessionId).catch((error: Error) => `rejected: ${error.message}`);
  assert.equal(closed, true);
  assert.ok(await eventually(() => errors.length >= 1), 'reported');
  assert.deepEqual(errors.map((e) => [e.code, (e.cause as Error | undefined)?.message]), [['ERR_SESSION_HANDLER_FAILED', 'a decorated promise whose then throws']]);
  assert.equal(engine.stats().handlerErrors, 1);
  await engine.stop();
});

test("an async 'removeListener' listener that rejects when a once('create') listener fires is reported, never an unhandled rejection", { timeout: 10_000 }, async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => { unhandled.push(reason); };
  process.on('unhandledRejection', onUnhandled);
  try {
    const engine = new SessionEngine({ clock: new ManualClock() });
    const errors: SessionError[] = [];
    engine.on('error', (error) => errors.push(error));
    (engine as EventEmitter).on('removeListener', async () => { throw new Error('async removeListener listener'); });
    engine.once('create', () => {});
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    lease.release();
    assert.ok(await eventually(() => errors.length + unhandled.length >= 1), 'surfaced somewhere');
    assert.deepEqual(unhandled.map((r) => (r as Error).message), [], 'no unhandled rejection');
    assert.deepEqual(errors.map((e) => [e.code, (e.cause as Error | undefined)?.message]), [['ERR_SESSION_HANDLER_FAILED', 'async removeListener listener']]);
    await engine.stop();
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});
