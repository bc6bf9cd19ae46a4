// One run of the stragglers property (test/property-redis-stragglers.test.ts) on a fresh prefix: the
// operations, then the end (everything released, every node stopped) and the checks.
import { setTimeout as delay } from 'node:timers/promises';
import { ManualClock, type SessionError, type WebProcess } from '../src/index.js';
import { deleteKeys, type RedisForTest } from './redis-support.js';
import { eventually, poll, settle } from './helpers.js';
import { checkRun } from './property-stragglers-checks.js';
import {
  CLOSE_TIMEOUT_MS, Inits, IP, LOCK_TABLE, makeNode,
  type ClusterNode, type HookSeen, type NodeIx, type Op, type Req, type Task, type Vars,
} from './property-stragglers-support.js';

/** Real time one operation's consequences get before the next one (the store polls every 5 ms). */
const PAUSE_MS = 15;
/** Real time any wait of the run may take: past it, the run fails as a hang. */
const DEADLINE_MS = 5_000;

export interface PidInfo {
  readonly kind: 'request' | 'task';
  readonly sessionId: string;
  /** A request's: what the last request of the process that ended in its open session left (vars.w). */
  completed: number | undefined;
  /** Values a hook may also see: written by work not (yet) ended in the open session (stragglers, logouts). */
  readonly extras: Set<number | undefined>;
}

/** The ids the nodes registered under (P nodes), in the order they joined. */
async function nodeIdsOf(r: RedisForTest, prefix: string): Promise<string[]> {
  let ids: string[] = [];
  await poll(async () => { ids = await r.redis.smembers(`${prefix}nodes`); return ids.length >= 2 ? undefined : 'joining'; }, DEADLINE_MS);
  return ids;
}

/** Error codes a run never expects. */
const UNEXPECTED = new Set(['ERR_SESSION_HOOK_FAILED', 'ERR_SESSION_HOOK_TIMEOUT', 'ERR_SESSION_STATE_NOT_STORABLE', 'ERR_SESSION_STATE_UNREADABLE', 'ERR_SESSION_HANDLER_FAILED']);

/** What the runs met, summed: shows the property reaches the stragglers it is about. */
export const coverage = { runs: 0, hooks: 0, drainTimeouts: 0, dropped: 0, stragglerSteps: 0, closedSteps: 0, logouts: 0, stops: 0, taskHooks: 0, heldMessages: 0, heldReplies: 0 };

export async function runStragglers(r: RedisForTest, prefix: string, ops: readonly Op[], log: (line: string) => void = () => {}): Promise<void> {
  const clock = new ManualClock();
  const inits = new Inits();
  const hooks: HookSeen[] = [];
  const nodes: ClusterNode[] = [];
  nodes.push(await makeNode(r, prefix, 0, clock, inits, hooks));
  nodes.push(await makeNode(r, prefix, 1, clock, inits, hooks));
  const violations: string[] = [];
  const nodeIds = await nodeIdsOf(r, prefix);
  const violation = (message: string): void => { violations.push(message); log(`VIOLATION ${message}`); };
  let seq = 0;
  let write = 0;
  const held: Req[] = [];
  const allReqs: Req[] = [];
  const tasks: Task[] = [];
  const knownIds: string[] = [];
  const pids = new Map<string, PidInfo>();
  /** Sessions whose close the test asked for (closeSession from outside or a logout). */
  const closeAsked = new Set<string>();
  /** Sessions whose closeSession() resolved true on a node (before that node's stop). */
  const closeKnown = new Map<string, Set<NodeIx>>();
  const pending = { acquires: 0, closes: 0 };
  let phase: 'ops' | 'end' = 'ops';
  const logoutChecks: Promise<void>[] = [];

  const remember = (id: string): void => { if (!knownIds.includes(id)) knownIds.push(id); };
  /** Node `n` knows the close of `id` has ended: its own closeSession resolved, it ran the close, or it heard 'x'. */
  const known = (id: string, n: NodeIx): boolean =>
    closeKnown.get(id)?.has(n) === true || nodes[n]!.closedHere.has(id) || nodes[n]!.messages.delivered.has(`x ${id}`);
  const live = (n: NodeIx): ClusterNode => (nodes[n]!.stopCalled ? nodes[1 - n]! : nodes[n]!);
  const pidInfo = (pid: string, kind: 'request' | 'task', sessionId: string): PidInfo => {
    let info = pids.get(pid);
    if (info === undefined) pids.set(pid, info = { kind, sessionId, completed: undefined, extras: new Set() });
    return info;
  };
  for (const node of nodes) {
    node.engine.on('close', (event) => {
      if (phase === 'ops' && event.reason === 'shutdown') violation(`a session closed with 'shutdown' while another node was alive (${event.sessionId} on node ${node.ix})`);
    });
  }

  /** One step of a handler (request or task) resumed by the test: what it sees, a write, a lock. */
  const step = async (proc: WebProcess<Vars>, sessionId: string, n: NodeIx, writes: number[], record: number | undefined, what: string): Promise<void> => {
    const before = known(sessionId, n);
    const seen = { closed: proc.closed, w: proc.vars.w };
    if (seen.closed) coverage.closedSteps++;
    else if (closeAsked.has(sessionId)) coverage.stragglerSteps++;
    if (before && (!seen.closed || seen.w !== undefined)) violation(`${what} ${proc.processId} of ${sessionId} on node ${n} resumes in the old context after its close ended there (closed ${seen.closed}, w ${String(seen.w)})`);
    if (!proc.closed) {
      const w = ++write;
      proc.vars.w = w;
      writes.push(w);
      pids.get(proc.processId)?.extras.add(w);
    }
    if (record === undefined) return;
    const locked = await proc.locks.tryLock(LOCK_TABLE, record).then((v) => v, (e: SessionError) => e.code);
    if (before && locked === true) violation(`${what} ${proc.processId} of ${sessionId} on node ${n} took a record lock after its close ended there`);
  };

  const release = (req: Req): void => {
    held.splice(held.indexOf(req), 1);
    req.endSeq ??= ++seq;
    const info = pids.get(req.pid)!;
    // Ended in its open session, on a node not stopping: the state it leaves is what the hook must see.
    // A request that wrote nothing leaves the state it started from: one of those allowed already.
    if (!closeAsked.has(req.sessionId) && !nodes[req.node]!.stopCalled && req.writes.length > 0) {
      info.completed = req.writes.at(-1);
      info.extras.clear();
    }
    req.lease.release();
  };

  const acquire = (n: NodeIx, sessionId: string | undefined, hold: boolean, slow: boolean): void => {
    const node = live(n);
    if (node.stopCalled) return;
    inits.slowNext = slow;
    pending.acquires++;
    node.engine.acquire({ sessionId, ip: IP }).then((lease) => {
      pending.acquires--;
      remember(lease.sessionId);
      const req: Req = { node: node.ix, lease, pid: lease.proc.processId, sessionId: lease.sessionId, grantSeq: ++seq, grantAtMs: clock.now(), endSeq: undefined, writes: [] };
      const info = pidInfo(req.pid, 'request', req.sessionId);
      const w = lease.proc.vars.w as number | undefined;
      if (!lease.proc.closed && w !== info.completed && !info.extras.has(w)) {
        violation(`request ${req.pid} of ${req.sessionId} on node ${req.node} starts from w=${String(w)}, the last request left ${String(info.completed)} (or one of ${[...info.extras].join()})`);
      }
      allReqs.push(req);
      held.push(req);
      if (known(req.sessionId, req.node) && !(lease.proc.closed && lease.proc.vars.w === undefined)) {
        violation(`request ${req.pid} of ${req.sessionId} granted on node ${req.node} in the old context after its close ended there (closed ${lease.proc.closed}, w ${String(lease.proc.vars.w)})`);
      }
      if (!hold || phase === 'end') {
        void lease.run(() => step(lease.proc, req.sessionId, req.node, req.writes, undefined, 'request')).finally(() => release(req));
      }
    }, () => { pending.acquires--; });
  };

  const closeSession = (node: ClusterNode, id: string, inside?: Req): Promise<boolean> => {
    closeAsked.add(id);
    pending.closes++;
    const call = inside === undefined ? node.engine.closeSession(id) : inside.lease.run(() => node.engine.closeSession(node.engine.currentSessionId()));
    return call.then((closed) => {
      pending.closes--;
      if (closed && !node.stopCalled) {
        const set = closeKnown.get(id) ?? new Set<NodeIx>();
        set.add(node.ix);
        closeKnown.set(id, set);
      }
      return closed;
    }, (error: unknown) => {
      pending.closes--;
      violation(`closeSession(${id}) on node ${node.ix}${inside === undefined ? '' : ' (logout)'} rejected: ${String(error)}`);
      return false;
    });
  };

  const nodeIdle = (n: NodeIx): boolean => !nodes[n]!.stopped;
  const stopNode = (node: ClusterNode): void => {
    node.stopCalled = true;
    node.stopAtMs = clock.now();
    void node.engine.stop().then(() => {
      node.stopped = true;
      const at = ++seq;
      for (const req of allReqs) {
        if (req.node !== node.ix || req.endSeq !== undefined) continue;
        req.endSeq = at;
        req.endedByStop = true;
      }
    });
  };

  const pick = <T>(list: readonly T[], k: number): T | undefined => list[k % Math.max(1, list.length)];
  const openTasks = (): Task[] => tasks.filter((t) => t.started && !t.ended && t.next !== undefined && !nodes[t.node]!.stopped);

  const runOp = async (op: Op): Promise<void> => {
    switch (op.t) {
      case 'new': acquire(op.n, undefined, op.hold, op.slow); break;
      case 'return': { const id = pick(knownIds, op.s); if (id !== undefined) acquire(op.n, id, op.hold, op.slow); break; }
      case 'step': {
        const req = pick(held.filter((q) => nodeIdle(q.node)), op.k);
        if (req !== undefined) await req.lease.run(() => step(req.lease.proc, req.sessionId, req.node, req.writes, op.rec, 'request'));
        break;
      }
      case 'release': { const req = pick(held, op.k); if (req !== undefined) release(req); break; }
      case 'logout': {
        const req = pick(held.filter((q) => !nodes[q.node]!.stopCalled), op.k);
        if (req === undefined) break;
        await req.lease.run(() => step(req.lease.proc, req.sessionId, req.node, req.writes, undefined, 'request'));
        const node = nodes[req.node]!;
        // A logout from a request whose session's close was asked before (a straggler once that close is
        // past its drain): both stores answer true at once (a close under way, past the drain, is not
        // waited for from inside), and the caller is torn down as a straggler when that close ends.
        const closeAskedBefore = closeAsked.has(req.sessionId);
        const tornDown = (): boolean => req.lease.proc.closed && req.lease.proc.vars.w === undefined;
        logoutChecks.push(closeSession(node, req.sessionId, req).then(async (closed) => {
          if (closed && closeAskedBefore && !tornDown()) await eventually(tornDown, DEADLINE_MS);
          if (closed && !tornDown()) {
            violation(`logout of ${req.pid} in ${req.sessionId} on node ${req.node} resolved true, its caller not torn down (closed ${req.lease.proc.closed}, w ${String(req.lease.proc.vars.w)})`);
          }
        }));
        break;
      }
      case 'spawn': {
        const req = pick(held.filter((q) => nodeIdle(q.node)), op.k);
        if (req === undefined) break;
        const task: Task = { node: req.node, sessionId: req.sessionId, proc: undefined, started: false, ended: false, finished: false, endedAfterClose: false, writes: [], next: undefined, stepDone: undefined };
        inits.slowNext = op.slow;
        try {
          task.proc = req.lease.proc.spawn('task', async (p) => {
            task.started = true;
            for (;;) {
              const command = await new Promise<'step' | 'end'>((resolve) => { task.next = resolve; });
              task.next = undefined;
              if (command === 'end') break;
              await step(p, task.sessionId, task.node, task.writes, taskRecord, 'task').catch(() => {});
              task.stepDone?.();
            }
            task.finished = true;
          });
          pidInfo(task.proc.processId, 'task', task.sessionId);
          tasks.push(task);
        } catch {
          inits.slowNext = false; // refused (ERR_SESSION_CLOSED): no task
        }
        break;
      }
      case 'taskStep': {
        const task = pick(openTasks(), op.k);
        if (task === undefined) break;
        taskRecord = op.rec;
        const done = new Promise<void>((resolve) => { task.stepDone = resolve; });
        task.next!('step');
        if (await Promise.race([done.then(() => true), delay(DEADLINE_MS).then(() => false)]) === false) violation(`a task step of ${task.proc?.processId} did not end within ${DEADLINE_MS} ms`);
        break;
      }
      case 'taskEnd': {
        const task = pick(openTasks(), op.k);
        if (task === undefined) break;
        task.ended = true;
        task.endedAfterClose = closeAsked.has(task.sessionId) || nodes[task.node]!.stopCalled;
        task.next!('end');
        break;
      }
      case 'initDone': inits.resolveOne(); break;
      case 'closeOut': {
        const ids = [...new Set([...knownIds, ...await r.redis.zrange(`${prefix}open`, '0', '-1')])];
        const id = pick(ids, op.s);
        const node = live(op.n);
        if (id !== undefined && !node.stopCalled) { remember(id); void closeSession(node, id); }
        break;
      }
      case 'advance': clock.advance(op.ms); break;
      case 'lose': nodes[op.n]!.messages.lose = new Set(op.kinds); break;
      case 'hold': for (const kind of op.kinds) nodes[op.n]!.messages.hold.add(kind); break;
      case 'deliver': nodes[op.n]!.messages.deliver(); break;
      case 'holdReplies': if (!nodes[op.n]!.stopCalled && nodes[op.n]!.replies.wrap(nodes[op.n]!.client)) nodes[op.n]!.replies.hold(); break;
      case 'deliverReplies': nodes[op.n]!.replies.deliver(); break;
      case 'stop': if (!nodes.some((n) => n.stopCalled)) stopNode(nodes[op.n]!); break;
    }
  };
  let taskRecord = 0;

  try {
    for (const [i, op] of ops.entries()) {
      log(`#${i} ${JSON.stringify(op)}`);
      await runOp(op);
      await settle(3);
      await delay(PAUSE_MS);
    }

    // The end. 1: a node's stop() resolves within its bound, whatever still runs (stragglers included).
    // Replies held come back first (a stop waits for a claim or enter on its way: replies are not lost here).
    phase = 'end';
    for (const node of nodes) node.replies.deliver();
    for (const node of nodes) {
      if (!node.stopCalled || node.stopped) continue;
      for (let i = 0; i < 4 && !node.stopped; i++) {
        clock.advance(CLOSE_TIMEOUT_MS + 1);
        await poll(() => (node.stopped ? undefined : 'stopping'), 300);
      }
      if (!node.stopped) violation(`stop() of node ${node.ix} did not resolve after 4 × closeTimeoutMs of engine time (called at ${node.stopAtMs}, now ${clock.now()})`);
    }
    // 2: every message gets through again, every init, request and task ends.
    for (const node of nodes) { node.messages.lose.clear(); node.messages.deliver(); }
    const quiet = await poll(async () => {
      inits.resolveAll();
      for (const req of [...held]) release(req);
      for (const task of tasks) if (task.started && !task.ended && task.next !== undefined) { task.ended = true; task.endedAfterClose = closeAsked.has(task.sessionId) || nodes[task.node]!.stopCalled; task.next('end'); }
      clock.advance(1_000);
      await delay(5);
      // A task not started yet is settled once its node reported it will not run (its spawn, init or
      // refusal reported under its process id): its spawn reply or init may still be on its way.
      const refused = (t: Task): boolean => t.proc !== undefined && nodes[t.node]!.errors.some((e) => e.message.includes(`: ${t.proc!.processId} (`));
      const tasksLeft = tasks.filter((t) => (t.started ? !t.finished : !refused(t))).length;
      return pending.acquires === 0 && pending.closes === 0 && held.length === 0 && tasksLeft === 0 ? undefined
        : `acquires ${pending.acquires}, closes ${pending.closes}, held ${held.length}, tasks ${tasksLeft}`;
    }, DEADLINE_MS);
    if (quiet !== undefined) violation(`the work did not end within ${DEADLINE_MS} ms: ${quiet}`);
    await Promise.all(logoutChecks);
    // 3: the nodes still up stop, one after the other: the last one closes every session ('shutdown').
    for (const node of nodes) {
      if (node.stopCalled) continue;
      stopNode(node);
      const stopped = await poll(() => {
        clock.advance(1_000);
        return node.stopped ? undefined : 'stopping';
      }, DEADLINE_MS);
      if (stopped !== undefined) violation(`the final stop() of node ${node.ix} did not resolve within ${DEADLINE_MS} ms`);
    }
    await delay(50);

    await checkRun({ hooks, pids, tasks, nodes, closeAsked, allReqs, r, prefix, nodeIds, violation });
    for (const node of nodes) {
      const bad = node.errors.filter((e) => UNEXPECTED.has(e.code));
      if (bad.length > 0) violation(`node ${node.ix} reported ${bad.map((e) => `${e.code}: ${e.message}`).join('; ')}`);
    }
    coverage.runs++;
    coverage.hooks += hooks.length;
    coverage.taskHooks += hooks.filter((h) => h.pid.startsWith('t')).length;
    coverage.drainTimeouts += nodes.reduce((a, n) => a + n.errors.filter((e) => e.code === 'ERR_SESSION_DRAIN_TIMEOUT').length, 0);
    coverage.dropped += nodes.reduce((a, n) => a + n.messages.dropped, 0);
    coverage.logouts += logoutChecks.length;
    coverage.heldMessages += nodes.reduce((a, n) => a + n.messages.heldCount, 0);
    coverage.heldReplies += nodes.reduce((a, n) => a + n.replies.held, 0);
    coverage.stops += ops.filter((o) => o.t === 'stop').length > 0 ? 1 : 0;
    if (violations.length > 0) {
      const errors = nodes.map((n) => `node ${n.ix}: ${n.errors.map((e) => e.code).join(',')}`).join(' | ');
      throw new Error(`${violations.length} violation(s):\n  ${violations.join('\n  ')}\n  errors: ${errors}; hooks ${hooks.length}`);
    }
  } finally {
    for (const node of nodes) { node.messages.lose.clear(); node.messages.deliver(); node.replies.deliver(); }
    inits.resolveAll();
    for (const req of [...held]) release(req);
    for (const task of tasks) task.next?.('end');
    for (const node of nodes) if (!node.stopCalled) stopNode(node);
    await poll(() => { clock.advance(5_000); return nodes.every((n) => n.stopped) ? undefined : 'stopping'; }, DEADLINE_MS);
    await Promise.all(nodes.map((n) => n.client.quit().catch(() => n.client.disconnect())));
    await deleteKeys(r.redis, prefix);
  }
}
