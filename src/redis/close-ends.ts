// What a node does with its view of a session once the session's close has ended, however it learns it
// ('x', its own FINISH, a poll that found the key gone): the work of it still running here is torn down
// as the memory store tears down its stragglers, and the session's handle goes once that work is over.
import type { SessionVars, WebProcess } from '../process.js';
import type { ClusterWaits } from './cluster-waits.js';
import type { SessionHandle } from './node.js';
import type { ProcessSaves } from './processes.js';

type Known<Vars extends SessionVars> = Map<string, SessionHandle<Vars>>;

/** The close of `id` has ended: its work here is torn down (SessionHandle.finished); the handle stays while that work runs (a stop drains it). */
export function closeEnded<Vars extends SessionVars>(known: Known<Vars>, id: string): void {
  const handle = known.get(id);
  if (handle?.id === id) handle.finished();
  if (handle === undefined || handle.id !== id || handle.idleHere) known.delete(id);
}

/** Some work of a session not open any more has ended here: its handle goes once none is left. */
export function dropIfDone<Vars extends SessionVars>(known: Known<Vars>, handle: SessionHandle<Vars>): void {
  const primary = handle.primary;
  handle.leavePrimaryIfIdle();
  if (handle.idleHere && handle.state !== 'open' && known.get(handle.id) === handle) known.delete(handle.id);
  // A companion's last work ended: its primary may have been kept for it alone (a close that ended, or
  // was announced, while that work ran), and nothing else would look at it again.
  if (primary !== undefined && handle.primary === undefined) dropIfDone(known, primary);
}

/**
 * A request whose state went to another node's close at its logout (ProcessSaves.handOver) has ended:
 * nothing is saved. closeEnded no longer sees its run, so a lock it took after that close's teardown is
 * freed once the close has ended here; its handle goes as after any release.
 */
export function handedOverEnded<Vars extends SessionVars>(
  known: Known<Vars>, waits: ClusterWaits<Vars>, processes: Pick<ProcessSaves<Vars>, 'tearDown' | 'trackAfterClose'>,
  handle: SessionHandle<Vars>, proc: WebProcess<Vars>,
): void {
  // Tracked: a stop waits for it before it leaves, its clients still up.
  if (!proc.closed) processes.trackAfterClose(waits.closedElsewhere(handle.id).then(() => (proc.closed ? undefined : processes.tearDown(proc))));
  dropIfDone(known, handle);
}
