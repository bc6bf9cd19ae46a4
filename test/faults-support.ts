// What the fault suites (faults.test.ts, faults-teardown.test.ts, faults-handlers, faults-clients) share: waits
// by event-loop turns, the checks of an engine at rest after a fault, the sign-in/logout/lock application
// the teardown suites run, and a cleanup that stops the engine whatever state a failed assertion left.
import { after, before } from 'node:test';
import assert from 'node:assert/strict';
import type * as http from 'node:http';
import type { ManualClock, MemoryLockManager, SessionEngine, SessionVars, WebProcess } from '../src/index.js';
import { request, sessionCookie, settle, type TestResponse, type TestServer } from './helpers.js';
import { keepLoopAlive, track } from './engine-harness.js';

export const GUARD = { timeout: 10_000 };
export const CLOSE_TIMEOUT_MS = 5_000;
export const IDLE_TIMEOUT_MS = 60 * 60_000;

/**
 * Keeps the loop alive (engine timers are unref'ed: a hung test fails by its guard, not by an empty
 * loop) and collects anything that escapes the engine (a late hook's rejection, a task's): the
 * returned array must stay empty. Call once per file.
 */
export function watchEscapes(): unknown[] {
  keepLoopAlive();
  const escaped: unknown[] = [];
  const onEscape = (error: unknown): void => { escaped.push(error); };
  before(() => {
    process.on('unhandledRejection', onEscape);
    process.on('uncaughtException', onEscape);
  });
  after(() => {
    process.off('unhandledRejection', onEscape);
    process.off('uncaughtException', onEscape);
  });
  return escaped;
}

/** Event-loop turns until `condition` holds (I/O and continuations run; no wall time is waited on). */
export async function until(what: string, condition: () => boolean): Promise<void> {
  for (let i = 0; i < 20_000; i++) {
    if (condition()) return;
    await settle(1);
  }
  assert.fail(`never happened: ${what}`);
}

export function isClearing(response: TestResponse | undefined): boolean {
  return response !== undefined && response.setCookies.some((c) => c.startsWith('4DSID=; Max-Age=0;'));
}

/** Stops the engine whatever state a failed assertion left it in (moving the clock past hung closes), then closes the server. */
export async function stopAll<V extends SessionVars>(engine: SessionEngine<V>, server: TestServer | undefined, clock: ManualClock | undefined, gates: Array<{ resolve(): void }>): Promise<void> {
  for (const gate of gates) gate.resolve();
  const stopped = track(engine.stop());
  for (let round = 0; round < 50 && !stopped.settled; round++) {
    await settle();
    if (!stopped.settled) clock?.advance(engine.getOption('closeTimeoutMs'));
  }
  await server?.close();
}

// ---- the teardown suites' application and checks ------------------------------------------------

export interface Vars { user?: string; n: number }

export function locksIn(engine: SessionEngine<Vars>): number {
  return (engine.lockManager as MemoryLockManager).size;
}

/** The engine at rest: nothing closing, running, queued or locked, one process per live session. */
export function assertAtRest(engine: SessionEngine<Vars>, label: string): void {
  const s = engine.stats();
  assert.deepEqual(
    { closing: s.closingSessions, busy: s.busySessions, queued: s.queuedRequests, locksHeld: s.locksHeld, locks: locksIn(engine), processes: s.processes },
    { closing: 0, busy: 0, queued: 0, locksHeld: 0, locks: 0, processes: s.sessions },
    label,
  );
}

/** A new browser is served, takes the record the faulty session held, and its own close releases it again. */
export async function assertServesNewcomers(engine: SessionEngine<Vars>, server: TestServer): Promise<void> {
  const first = await request(server.url);
  assert.equal(first.status, 200, 'a new browser is served');
  const cookie = sessionCookie(first);
  assert.ok(cookie !== undefined);
  const lock = await request(server.url, { path: '/lock', cookie });
  assert.equal(lock.body, 'true', 'the record the faulty session held is free');
  assert.equal(sessionCookie(lock), cookie, 'same session on the second request');
  assert.equal(await engine.closeSession(cookie.slice(6)), true);
  assert.equal(await engine.lockManager.lockedBy({ table: 'Products', key: 1 }), null);
}

/** The application: a sign-in that leaves vars, a positioned selection and a record lock; a logout; a lock probe. */
export function app(engine: SessionEngine<Vars>) {
  return async (req: http.IncomingMessage, res: http.ServerResponse, proc: WebProcess<Vars>): Promise<void> => {
    proc.vars.n++;
    switch (req.url) {
      case '/work':
        proc.vars.user = 'ann';
        proc.selections.set('Products', [7, 1, 9]).position = 1;
        assert.equal(await proc.locks.tryLock('Products', 1), true);
        break;
      case '/logout': {
        const closed = await engine.closeSession(proc.sessionId);
        res.end(JSON.stringify({ closed, vars: proc.vars, held: proc.locks.held().length }));
        return;
      }
      case '/lock':
        res.end(String(await proc.locks.tryLock('Products', 1)));
        return;
    }
    res.end(String(proc.vars.n));
  };
}

/** What of an engine is still busy: all zero once every request, queue and close is over. */
export function idle<V extends SessionVars>(engine: SessionEngine<V>): { busy: number; queued: number; closing: number; processes: number } {
  const s = engine.stats();
  return { busy: s.busySessions, queued: s.queuedRequests, closing: s.closingSessions, processes: s.processes };
}
