// What the engine-close*.test.ts files share: a tracked lease opener, a request that leaves a
// recognisable context, what a hook saw of its process, and the checks of a finished teardown.
import assert from 'node:assert/strict';
import type { CloseEvent, CloseReason, LockRef, RequestLease, Selection, SessionEngine, SessionVars, WebProcess } from '../src/index.js';
import { leaseTracker } from './engine-harness.js';

export const IP = '198.51.100.7';
export const { open, shutdown, visit } = leaseTracker(IP);
export { keepLoopAlive, untilAborted } from './engine-harness.js';
export const MINUTE = 60_000;
/** Every test is bounded: a hang (a deadlock in the engine) fails that test instead of stalling the run. */
export const GUARD = { timeout: 5_000 };

export interface Vars {
  n: number;
  user?: string;
  saved?: boolean;
}

export function closesOf<V extends SessionVars>(engine: SessionEngine<V>): CloseEvent[] {
  const closes: CloseEvent[] = [];
  engine.on('close', (event) => closes.push(event));
  return closes;
}

export function nextClose<V extends SessionVars>(engine: SessionEngine<V>): Promise<CloseEvent> {
  return new Promise((resolve) => engine.once('close', resolve));
}

/** What a hook saw of its process. */
export interface Seen {
  sessionId: string;
  processId: string;
  name: string;
  reason: CloseReason;
  vars: unknown;
  selection: Selection | undefined;
  held: LockRef[];
  lockHolder: string | undefined;
  current: string;
  aborted: boolean;
  closed: boolean;
}

export async function snapshot<V extends SessionVars>(engine: SessionEngine<V>, proc: WebProcess<V>, reason: CloseReason): Promise<Seen> {
  const selection = proc.selections.get('Customers');
  return {
    sessionId: proc.sessionId,
    processId: proc.processId,
    name: proc.name,
    reason,
    vars: structuredClone(proc.vars),
    selection: selection === undefined ? undefined : { keys: [...selection.keys], position: selection.position },
    held: proc.locks.held(),
    lockHolder: (await engine.lockManager.lockedBy({ table: 'Customers', key: 42 }))?.processId,
    current: engine.currentSessionId(),
    aborted: proc.signal.aborted,
    closed: proc.closed,
  };
}

/** A request that leaves a recognisable context behind: vars, a positioned selection, a record lock. */
export async function work(lease: RequestLease<Vars>): Promise<void> {
  lease.proc.vars.n = 3;
  lease.proc.vars.user = 'ann';
  lease.proc.selections.set('Customers', [7, 42, 99]).position = 1;
  assert.equal(await lease.proc.locks.tryLock('Customers', 42), true);
}

export async function assertTornDown<V extends SessionVars>(engine: SessionEngine<V>, proc: WebProcess<V>): Promise<void> {
  assert.deepEqual(proc.locks.held(), []);
  assert.equal(await engine.lockManager.lockedBy({ table: 'Customers', key: 42 }), null);
  assert.deepEqual(proc.selections.tables(), []);
  assert.equal(proc.selections.get('Customers'), undefined);
  assert.deepEqual(proc.vars, {});
  assert.equal(proc.closed, true);
}
