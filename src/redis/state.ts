import { deserialize, serialize } from 'node:v8';
import { SessionError } from '../errors.js';
import type { LockRef } from '../locks.js';
import { processInternals, type SessionVars, type WebProcess } from '../process.js';

/** A process as Redis keeps it between requests. */
interface SavedProcess {
  readonly v: object;
  readonly s: readonly (readonly [table: string, keys: readonly (string | number)[], position: number])[];
  readonly h: readonly LockRef[];
}

/**
 * The state of a process as bytes: vars, selections and the locks it holds, by the structured clone
 * algorithm (node:v8), so Maps, Sets, Dates, BigInts, typed arrays and cycles survive; functions,
 * symbols and class prototypes do not (a class instance comes back as a plain object). A value that
 * cannot be cloned throws `ERR_SESSION_STATE_NOT_STORABLE`, never drops data silently.
 */
export function saveProcess(proc: WebProcess<SessionVars>): Buffer {
  const selections = proc.selections;
  const saved: SavedProcess = {
    v: proc.vars,
    s: selections.tables().map((table) => {
      const selection = selections.get(table)!;
      return [table, selection.keys, selection.position] as const;
    }),
    h: processInternals.heldLocks(proc),
  };
  try {
    return serialize(saved);
  } catch (error) {
    throw new SessionError('ERR_SESSION_STATE_NOT_STORABLE', `${proc.processId}: ${(error as Error).message}`, { cause: error, sessionId: proc.sessionId });
  }
}

/**
 * Puts saved state into a process rebuilt on this node; an empty buffer (a process never saved) changes
 * nothing. Bytes that do not read back as a saved process throw `ERR_SESSION_STATE_UNREADABLE` (the
 * process may then hold part of them: its caller discards it).
 */
export function restoreProcess(proc: WebProcess<SessionVars>, bytes: Buffer): boolean {
  if (bytes.length === 0) return false;
  try {
    const saved: unknown = deserialize(bytes);
    if (!isSavedProcess(saved)) throw new TypeError('not a saved process');
    proc.vars = saved.v;
    for (const [table, keys, position] of saved.s) proc.selections.set(table, keys).position = position;
    processInternals.restoreHeldLocks(proc, saved.h);
  } catch (error) {
    throw new SessionError('ERR_SESSION_STATE_UNREADABLE', `${proc.processId}: ${(error as Error).message}`, { cause: error, sessionId: proc.sessionId });
  }
  return true;
}

/** The shape saveProcess writes (its entries as far as restoring them needs). */
function isSavedProcess(value: unknown): value is SavedProcess {
  if (typeof value !== 'object' || value === null) return false;
  const { v, s, h } = value as Partial<Record<keyof SavedProcess, unknown>>;
  return typeof v === 'object' && v !== null && Array.isArray(h)
    && Array.isArray(s) && s.every((entry) => Array.isArray(entry) && typeof entry[0] === 'string' && Array.isArray(entry[1]) && typeof entry[2] === 'number');
}
