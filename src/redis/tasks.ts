// Spawned tasks on the Redis store (4D Mobile style background processes of a session): registered in
// Redis before they start, run in their own async context, and saved, released or torn down by the
// process saves when they end.
import { randomUUID } from 'node:crypto';
import { SessionError } from '../errors.js';
import { processInternals, taskFailure, taskRefused, WebProcess, type SessionVars } from '../process.js';
import { runAs } from '../runs.js';
import { keyTtlMs, text, unavailable, waiterStaleMs, type NodeServices, type Reply, type SessionHandle } from './node.js';
import type { ProcessSaves } from './processes.js';

export class RedisTasks<Vars extends SessionVars> {
  readonly #node: NodeServices<Vars>;
  readonly #saves: ProcessSaves<Vars>;

  constructor(node: NodeServices<Vars>, saves: ProcessSaves<Vars>) {
    this.#node = node;
    this.#saves = saves;
  }

  /**
   * `proc.spawn` on this node: the process is returned at once and registered in Redis before the
   * task starts (a refusal there is reported: the session closed as a task failure, the process limit
   * as ERR_SESSION_PROCESS_LIMIT, counted in rejected.processLimit).
   */
  spawn(handle: SessionHandle<Vars>, name: string, task: (proc: WebProcess<Vars>) => Promise<void>): WebProcess<Vars> {
    if (handle.state !== 'open') throw new SessionError('ERR_SESSION_CLOSED', `cannot spawn "${name}"`, { sessionId: handle.id });
    const proc = new WebProcess<Vars>(handle, name, {} as Vars, `t${randomUUID()}`);
    handle.processCount++;
    void this.#runTask(handle, proc, task);
    return proc;
  }

  async #runTask(handle: SessionHandle<Vars>, proc: WebProcess<Vars>, task: (proc: WebProcess<Vars>) => Promise<void>): Promise<void> {
    const { ctx, redis, settings, nodeId } = this.#node;
    let token: string;
    this.#saves.writeBegins(proc.processId);
    try {
      // A regenerate of the request spawning this, not awaited: the spawn names the id it gives.
      if (handle.renaming !== undefined) await handle.renaming;
      const sentAtMs = performance.now();
      const reply = (await redis.lwsSpawn(settings.prefix, handle.id, nodeId, ctx.options.maxConcurrentProcesses, keyTtlMs(ctx, settings), proc.processId, proc.name, waiterStaleMs(settings)) as Reply).map(text);
      if (reply[0] !== 'ok' || reply[1] === undefined) {
        throw new SessionError(reply[0] === 'plimit' ? 'ERR_SESSION_PROCESS_LIMIT' : 'ERR_SESSION_CLOSED', `cannot spawn "${proc.name}"`, { sessionId: handle.id });
      }
      // Read in doubt, the task's process may have been freed by a sweep since: refused as a lost reply.
      this.#node.lease.refuseIfInDoubt('spawn', sentAtMs);
      token = reply[1];
    } catch (error) {
      // A spawn whose reply was lost may have taken its process: the repair removes it (no longer kept).
      this.#saves.writeEnds(proc.processId);
      if (!(error instanceof SessionError)) this.#node.lostReplies.due = true;
      handle.processCount--;
      await processInternals.teardown(proc);
      // Refused for the process limit: said under its own code and counted as the memory store's
      // spawn() throw is (rejected.processLimit), not as an application task that failed.
      if (error instanceof SessionError && error.code === 'ERR_SESSION_PROCESS_LIMIT') return void ctx.report(error, 'processLimit');
      ctx.report(new SessionError('ERR_SESSION_TASK_FAILED', `${proc.processId} (${proc.name})`, { cause: unavailable(error, handle.id), sessionId: handle.id }), 'taskErrors');
      return;
    }
    handle.startRun({ proc, token, kind: 'task' });
    this.#saves.writeEnds(proc.processId);
    if (handle.state !== 'open') processInternals.abort(proc, () => new SessionError('ERR_SESSION_CLOSED', 'closing', { sessionId: handle.id }));
    let initialized = false;
    /** Refused because this node's close stopped waiting for it: it stays in the session, for that close to hook (no context). */
    let refusedByClose = false;
    try {
      // Torn down before it could start: its reply read after the session's close had ended here
      // (startRun tore it down), or its init outlasting the close's drain (this node's close hooks it,
      // or will once its hook loop gets to it, maybe after other processes' hooks; or tore it down). As
      // on the memory store, neither init's vars nor the task come into it.
      const vars = proc.closed ? undefined : await this.#saves.initVars(proc);
      refusedByClose = !proc.closed && (handle.closing?.has(proc) === true || this.#node.pastDrain(handle.id));
      if (vars === undefined || proc.closed || refusedByClose) ctx.report(taskRefused(proc, handle.id), 'taskErrors');
      else if (this.#node.drainEnded || this.#node.retries.stopped) {
        // This node's stop gave up on it and the node leaves the cluster: Redis frees its process with the
        // node's others. It leaves the session without a context, as a request refused then does.
        const stopped = new SessionError('ERR_SESSION_STOPPED', `cannot run "${proc.name}": the node stopped while its init ran`, { sessionId: handle.id });
        ctx.report(new SessionError('ERR_SESSION_TASK_FAILED', `${proc.processId} (${proc.name})`, { cause: stopped, sessionId: handle.id }), 'taskErrors');
      } else {
        proc.vars = vars;
        initialized = true;
        await runAs(ctx.als, proc, () => task(proc));
      }
    } catch (error) {
      ctx.report(taskFailure(initialized, proc, error, handle.id), 'taskErrors');
    }
    handle.endRun(proc);
    handle.lastActivityAtMs = ctx.clock.now();
    const open = handle.state === 'open';
    // A task that ends on its own ends its process (locks released, no hook); in a closing session
    // its state is saved for the hook the claimer runs, who tears it down. In a session discarded
    // (its first init failed) nobody else will: torn down here. A process whose own init failed never
    // had a context: it leaves without state, so no close hooks it (RELEASE), and is torn down here. One
    // refused past its close's drain stays (no state): that close hooks it, as the memory store does, also
    // when it starts over from what Redis holds (a Redis error) after this release.
    const answered = new Promise<void>((resolve) => this.#saves.save(handle, proc, token, initialized ? proc : undefined, (open || !initialized) && !refusedByClose ? 'leaves' : 'stays', undefined, resolve));
    if (open) handle.processCount--;
    if (handle.state !== 'closing' || !initialized) {
      // After the release's answer, as a failed init's teardown (request-init.ts): a release fenced off
      // (this node taken for dead, the process freed under the task) tells the teardown to free nothing
      // in the process's name, whose locks a hook on another node may hold by now.
      await answered;
      await this.#saves.tearDown(proc);
    }
  }
}
