import { SessionError } from '../errors.js';
import { processInternals, type SessionVars, type WebProcess } from '../process.js';
import { initFailure } from '../store.js';
import { dropIfDone } from './close-ends.js';
import { unavailable, type NodeServices, type SessionHandle } from './node.js';
import { sessionLeftRedis } from './node-keys.js';
import type { ProcessSaves } from './processes.js';

/** What a request's process without saved state needs of its node. */
export interface RequestInitDeps<Vars extends SessionVars> {
  readonly node: NodeServices<Vars>;
  readonly known: Map<string, SessionHandle<Vars>>;
  readonly processes: ProcessSaves<Vars>;
}

/**
 * A request's process without saved state (new, or never saved): its vars come from `init`. Resolves
 * `lease` once they have; rejects when init failed (the process leaves the session, a new session goes
 * with it) or when the session's close ended while init ran (no request runs in the closed session).
 */
export async function initRequestProcess<Vars extends SessionVars, Lease>(
  deps: RequestInitDeps<Vars>, handle: SessionHandle<Vars>, proc: WebProcess<Vars>, token: string, lease: Lease, isNew: boolean,
): Promise<Lease> {
  const { node, processes } = deps;
  let vars: Vars;
  try {
    vars = await processes.initVars(proc);
  } catch (error) {
    // No context was ever made: the process leaves the session, so the next request runs init again.
    // A new session goes with it, and any task init spawned is asked to stop (as the memory store
    // discards it). The caller hears once Redis has answered the release and the record locks init
    // took are given back: its retry must find neither (a place under the cap, a lock).
    handle.endRun(proc);
    // The request ended here: its session's idle time counts from now, as the release below writes to
    // Redis ('la') and as the memory store keeps it (sessions() reads this node's handle).
    if (!isNew && handle.state === 'open') handle.lastActivityAtMs = node.ctx.clock.now();
    if (isNew) {
      handle.state = 'closed';
      for (const task of handle.runs.keys()) processInternals.abort(task, () => new SessionError('ERR_SESSION_CLOSED', 'its session was discarded', { sessionId: handle.id }));
    }
    // The teardown waits for the release's answer: a release fenced off (the process freed under this
    // run, its node taken for dead) tells it to free nothing in the process's name (ProcessSaves.tearDown).
    await new Promise<void>((resolve) => processes.save(handle, proc, token, undefined, isNew ? 'leavesWithSession' : 'leaves', undefined, resolve));
    await processes.tearDown(proc);
    throw initFailure(node.ctx, error, handle.id);
  }
  const hooked = handle.closing?.has(proc) === true;
  if (hooked || node.pastDrain(handle.id)) {
    // This node's close has stopped waiting for the process (its drain gave up on init at closeTimeoutMs),
    // and hooks it or is about to (another process's hook may run first): no request runs under its own
    // process's hook, nor do init's vars come into it. It ends as a request that changed nothing would (a
    // release saving no state). A process the hook loop has named is the close's to tear down; one it has
    // not yet is found no more (no longer running here: the close hooks its saved state), so it goes here.
    handle.endRun(proc);
    processes.save(handle, proc, token, undefined, 'stays');
    if (!hooked) await processes.tearDown(proc);
    throw new SessionError('ERR_SESSION_CLOSED', 'its session closed while init ran', { sessionId: handle.id });
  }
  if (node.drainEnded || node.retries.stopped) await refuseStopped(node, processes, handle, proc);
  proc.vars = vars;
  if (handle.state !== 'open') {
    // Its session's close may have stopped waiting for it (init outlasted closeTimeoutMs) and ended
    // (here or on another node): no request runs in a session whose hooks and teardown are done (the
    // locks init took go with the process).
    const gone = handle.state === 'closed' || await sessionLeftRedis(node.redis, node.settings, handle.id);
    // Unavailable: counted by acquire, which also has the repair free the process.
    const refusal = gone === undefined
      ? unavailable(new Error('Redis did not answer whether the session had closed'), handle.id)
      : gone ? new SessionError('ERR_SESSION_CLOSED', 'its session closed while init ran', { sessionId: handle.id }) : undefined;
    if (refusal !== undefined) {
      handle.endRun(proc);
      await processes.tearDown(proc);
      // Its enter filed the process among this node's running ones (P nb:<node>): a release that finds
      // the session gone takes it out, as any late release does (kept, the entry would stay as long as
      // the node lives). Nothing is saved. Unavailable: the repair takes it out as it frees the process.
      if (gone === true) processes.save(handle, proc, token, undefined, 'stays');
      // No other release follows: its handle goes now (finished first if a claim that found it gone reopened it).
      if (gone === true && handle.idleHere) handle.finished();
      dropIfDone(deps.known, handle);
      throw refusal;
    }
    // Its drain may have ended while the question above was on its way.
    if (node.drainEnded || node.retries.stopped) await refuseStopped(node, processes, handle, proc);
  }
  return lease;
}

/**
 * This node's stop gave up on the request at its bound and the node leaves the cluster (or has left):
 * Redis frees the process with the node's others, so another node may take it. Started now, the
 * request would run beside that one: refused as one arriving after the stop (init's locks go with it).
 */
async function refuseStopped<Vars extends SessionVars>(node: NodeServices<Vars>, processes: ProcessSaves<Vars>, handle: SessionHandle<Vars>, proc: WebProcess<Vars>): Promise<never> {
  handle.endRun(proc);
  await processes.tearDown(proc);
  node.ctx.counters.rejected.stopped++;
  throw new SessionError('ERR_SESSION_STOPPED', 'the node stopped while init ran', { sessionId: handle.id });
}
