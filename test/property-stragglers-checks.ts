// The checks at the end of one stragglers run (test/property-stragglers-run.ts), once every node has
// stopped: the invariants of DESIGN.md §1 over what the run recorded, and what Redis still holds.
import type { RedisForTest } from './redis-support.js';
import { CLOSE_TIMEOUT_MS, type ClusterNode, type HookSeen, type Req, type Task } from './property-stragglers-support.js';
import type { PidInfo } from './property-stragglers-run.js';

/** What a run recorded, for the checks. */
export interface RunRecord {
  readonly hooks: readonly HookSeen[];
  readonly pids: ReadonlyMap<string, PidInfo>;
  readonly tasks: readonly Task[];
  readonly nodes: readonly ClusterNode[];
  /** Sessions whose close the test asked for (closeSession from outside or a logout). */
  readonly closeAsked: ReadonlySet<string>;
  readonly allReqs: readonly Req[];
  readonly r: RedisForTest;
  readonly prefix: string;
  readonly nodeIds: readonly string[];
  readonly violation: (message: string) => void;
}

export async function checkRun({ hooks, pids, tasks, nodes, closeAsked, allReqs, r, prefix, nodeIds, violation }: RunRecord): Promise<void> {
  // Checks. Invariant 1 (cluster-wide): each hook once; every request process hooked; a task that
  // ended in its open session not hooked (it left), one that ran into a close hooked.
  const count = new Map<string, HookSeen[]>();
  for (const h of hooks) count.set(h.pid, [...(count.get(h.pid) ?? []), h]);
  for (const [pid, seen] of count) if (seen.length > 1) violation(`invariant 1: ${pid} hooked ${seen.length} times (${seen.map((h) => `node ${h.node} w=${String(h.w)}`).join(', ')})`);
  for (const [pid, info] of pids) {
    const seen = count.get(pid) ?? [];
    if (info.kind === 'request') {
      if (seen.length === 0) violation(`invariant 1: request process ${pid} of ${info.sessionId} never hooked`);
      const allowed = new Set([info.completed, ...info.extras]);
      for (const h of seen) {
        if (!allowed.has(h.w as number | undefined)) violation(`invariant 2: hook of ${pid} of ${info.sessionId} (node ${h.node}) saw w=${String(h.w)}, the last request left ${String(info.completed)} (or one of ${[...info.extras].join()})`);
      }
    } else {
      const task = tasks.find((t) => t.proc?.processId === pid);
      if (task === undefined || !task.started) continue;
      if (!task.endedAfterClose && seen.length > 0 && !nodes[task.node]!.stopCalled) violation(`invariant 1: task ${pid} of ${info.sessionId} ended in its open session, yet hooked`);
      if (task.endedAfterClose && seen.length === 0 && closeAsked.has(task.sessionId) && !nodes[task.node]!.stopCalled) violation(`invariant 1: task ${pid} of ${info.sessionId} ran into its close, never hooked`);
      for (const h of seen) if (h.w !== undefined && !task.writes.includes(h.w as number)) violation(`invariant 2: hook of task ${pid} saw w=${String(h.w)}, never written by it`);
    }
  }
  // Invariant 7: requests of one process never overlap (a stopped node's requests end with its stop).
  const byPid = new Map<string, Req[]>();
  for (const req of allReqs) byPid.set(req.pid, [...(byPid.get(req.pid) ?? []), req]);
  for (const [pid, reqs] of byPid) {
    reqs.sort((a, b) => a.grantSeq - b.grantSeq);
    for (let i = 1; i < reqs.length; i++) {
      const prev = reqs[i - 1]!;
      // A stopped node leaves Redis once its stop's bound (closeTimeoutMs) has passed, its requests given
      // up (README, onStop), a moment before its stop() resolves: a grant elsewhere after that bound is
      // no overlap.
      const afterStopBound = prev.endedByStop === true && reqs[i]!.grantAtMs >= nodes[prev.node]!.stopAtMs + CLOSE_TIMEOUT_MS;
      if (!afterStopBound && (prev.endSeq ?? Infinity) > reqs[i]!.grantSeq) violation(`invariant 7: two requests of ${pid} overlap (nodes ${prev.node} and ${reqs[i]!.node})`);
    }
  }
  // Invariant 3 in Redis: no session, no record lock left.
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, found] = await r.redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    keys.push(...found.map((k) => k.slice(prefix.length)));
  } while (cursor !== '0');
  const kept = keys.filter((k) => /^(s|wq|lock|plocks|nb):|^(open|idle|lru|closing)$/.test(k));
  if (kept.length > 0) {
    const detail = await Promise.all(kept.map(async (k) => `${k}${k.startsWith('nb:') ? ` = {${(await r.redis.smembers(`${prefix}${k}`)).join(', ')}}` : ''}`));
    violation(`after every session closed: left in Redis ${detail.join(' ')} (node ids: ${nodeIds.join(', ')})`);
  }
}
