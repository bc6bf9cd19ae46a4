import { DefaultDeserializer, serialize } from 'node:v8';
import { SessionError } from '../errors.js';
import { isLockRef, lockKey, type LockRef } from '../locks.js';
import { processInternals, type SessionVars, type WebProcess } from '../process.js';
import { restoreSelection } from '../selections.js';

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
 * cannot be cloned throws `ERR_SESSION_STATE_NOT_STORABLE`, never drops data silently. Undefined when
 * the bytes are `unchangedFrom`'s (nothing to write).
 */
export function saveProcess(proc: WebProcess<SessionVars>, unchangedFrom: Buffer | undefined, maxBytes: number): Buffer | undefined {
  const selections = proc.selections;
  const saved: SavedProcess = {
    v: proc.vars,
    s: selections.tables().map((table) => {
      const selection = selections.get(table)!;
      return [table, selection.keys, selection.position] as const;
    }),
    h: processInternals.heldLocks(proc),
  };
  let bytes: Buffer;
  try {
    bytes = serialize(saved);
  } catch (error) {
    throw new SessionError('ERR_SESSION_STATE_NOT_STORABLE', `${proc.processId}: ${(error as Error).message}`, { cause: error, sessionId: proc.sessionId });
  }
  // Serialization is deterministic, so equal bytes are an unchanged state (a read-only request): nothing
  // is written, so nothing is refused (a state a node with a larger maxStateBytes wrote stands as it is).
  if (unchangedFrom !== undefined && unchangedFrom.length > 0 && bytes.equals(unchangedFrom)) return undefined;
  // Refused here rather than by Redis, which would cut the connection the release (and its batch) went on.
  if (bytes.length > maxBytes) {
    throw new SessionError('ERR_SESSION_STATE_NOT_STORABLE', `${proc.processId}: a state of ${bytes.length} bytes, over maxStateBytes (${maxBytes})`, { sessionId: proc.sessionId });
  }
  // node:v8 writes nesting it cannot read back (its reader recurses: a linked list of ~2,000 nodes
  // overflows the stack), which would make every later request of the session fail and lose its hook.
  // Each level takes at least 3 bytes, so only a state that long can be that deep.
  if (bytes.length >= 3 * MAX_NESTING && nestedDeeperThan(saved, MAX_NESTING)) {
    throw new SessionError('ERR_SESSION_STATE_NOT_STORABLE', `${proc.processId}: values nested deeper than ${MAX_NESTING} levels cannot be read back`, { sessionId: proc.sessionId });
  }
  return bytes;
}

/**
 * What a process whose state cannot be stored keeps in Redis: the state saved before (`loaded`), with
 * the locks it holds now. The locks are facts in Redis, not application state: the list must not lose
 * one the failed request took (the next request's `locks.held()` would miss it). Undefined when there is
 * nothing to change or nothing saved before.
 */
export function savedBeforeWithHeldLocks(loaded: Buffer | undefined, proc: WebProcess<SessionVars>): Buffer | undefined {
  if (loaded === undefined || loaded.length === 0) return undefined;
  try {
    const saved = deserialize(loaded);
    if (!isSavedProcess(saved)) return undefined;
    const held = processInternals.heldLocks(proc);
    const before = new Set(saved.h.map(lockKey));
    if (held.length === before.size && held.every((ref) => before.has(lockKey(ref)))) return undefined;
    return serialize({ v: saved.v, s: saved.s, h: held } satisfies SavedProcess);
  } catch {
    return undefined; // the state before cannot be read here either: it stands as it is
  }
}

/** A context with nothing in it but the locks the process holds (its own state could not be stored). */
export function emptyContext(proc: WebProcess<SessionVars>): Buffer {
  return serialize({ v: {}, s: [], h: processInternals.heldLocks(proc) } satisfies SavedProcess);
}

/** The deepest nesting of objects, arrays, Maps and Sets a saved state may have (vars at level 2). */
export const MAX_NESTING = 1_000;

/**
 * Whether `root` nests deeper than `limit`, walked without recursion in the order node:v8 writes it,
 * each object at the depth where it is first met (a later reference to it is no nesting).
 */
function nestedDeeperThan(root: unknown, limit: number): boolean {
  const seen = new Set<object>();
  // A stack of the objects still to walk and their depths, in two arrays (no pair per entry).
  const pending: object[] = [];
  const depths: number[] = [];
  if (typeof root === 'object' && root !== null) {
    pending.push(root);
    depths.push(1);
  }
  for (let value = pending.pop(); value !== undefined; value = pending.pop()) {
    const depth = depths.pop()!;
    if (seen.has(value)) continue;
    if (depth > limit) return true;
    seen.add(value);
    const children = childrenOf(value);
    for (let i = children.length - 1; i >= 0; i--) {
      const child = children[i];
      if (typeof child === 'object' && child !== null) {
        pending.push(child);
        depths.push(depth + 1);
      }
    }
  }
  return false;
}

function childrenOf(value: object): unknown[] {
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return [];
  if (value instanceof Map) return [...value].flat();
  if (value instanceof Set) return [...value];
  const own = Object.values(value);
  if (value instanceof Error && 'cause' in value) own.push(value.cause);
  return own;
}

/**
 * Puts saved state into a process rebuilt on this node; an empty buffer (a process never saved) changes
 * nothing. Bytes that do not read back as a saved process throw `ERR_SESSION_STATE_UNREADABLE` (the
 * process may then hold part of them: its caller discards it). Damaged bytes and bytes a newer Node wrote
 * cannot be told apart in general (V8 adds tags to its format without a version change), so neither is
 * ever deleted for being unreadable.
 */
export function restoreProcess(proc: WebProcess<SessionVars>, bytes: Buffer): boolean {
  if (bytes.length === 0) return false;
  try {
    const saved: unknown = deserialize(bytes);
    if (!isSavedProcess(saved)) throw new TypeError('not a saved process');
    proc.vars = saved.v;
    // As saved, unchecked: whatever this version (or an earlier one) saved must read back.
    for (const [table, keys, position] of saved.s) restoreSelection(proc.selections, table, keys, position);
    processInternals.restoreHeldLocks(proc, saved.h);
  } catch (error) {
    const why = isNewerFormat(bytes) ? `written in serialization format ${bytes[1]}, newer than this Node's ${LOCAL_FORMAT}` : (error as Error).message;
    throw new SessionError('ERR_SESSION_STATE_UNREADABLE', `${proc.processId}: ${why}`, { cause: error, sessionId: proc.sessionId });
  }
  return true;
}

/** The part of node:v8's deserializer its typings leave out: how it rebuilds a typed array or Buffer. */
interface HostObjectReader {
  _readHostObject(this: DefaultDeserializer): ArrayBufferView;
}
const readHostObject = (DefaultDeserializer.prototype as unknown as HostObjectReader)._readHostObject;

/**
 * node:v8's deserializer rebuilds a typed array, DataView or Buffer as a view into the bytes it reads
 * (or into a pooled copy): memory shared with other states (Node's 8 KiB Buffer pool, a Redis reply).
 * `vars.bytes.buffer` would then hold other sessions' vars and ids. Each is copied into an ArrayBuffer
 * of its own, as the structured clone algorithm gives it.
 */
class OwnBytesDeserializer extends DefaultDeserializer {
  _readHostObject(): ArrayBufferView {
    const view = readHostObject.call(this);
    const own = new ArrayBuffer(view.byteLength);
    new Uint8Array(own).set(new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
    if (Buffer.isBuffer(view)) return Buffer.from(own);
    if (view instanceof DataView) return new DataView(own);
    const TypedArray = view.constructor as new (buffer: ArrayBuffer) => ArrayBufferView;
    return new TypedArray(own);
  }
}

function deserialize(bytes: Buffer): unknown {
  const reader = new OwnBytesDeserializer(bytes);
  reader.readHeader();
  return reader.readValue();
}

/**
 * What restoring relies on and saveProcess always writes: the three parts, selections and held locks as
 * lists, and each held lock a record reference (its release checks that). Nothing more: whatever this
 * version saved (vars of any kind, even undefined; selection keys and positions as the application set
 * them) must read back.
 */
function isSavedProcess(value: unknown): value is SavedProcess {
  if (typeof value !== 'object' || value === null || !('v' in value)) return false;
  const { s, h } = value as { s?: unknown; h?: unknown };
  return Array.isArray(s) && Array.isArray(h) && h.every(isLockRef);
}

/** The format version this Node's serializer writes (the byte after the 0xFF header tag). */
const LOCAL_FORMAT = serialize(0)[1]!;

/** Bytes whose header names a serialization format version above this Node's (said in the error; not every newer Node's bytes do). */
function isNewerFormat(bytes: Buffer): boolean {
  return bytes.length > 1 && bytes[0] === 0xff && bytes[1]! > LOCAL_FORMAT;
}
