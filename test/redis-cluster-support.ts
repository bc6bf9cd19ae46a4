// What the multi-node Redis tests (redis-cluster*, redis-faults, redis-outage) share beside the cluster fixture: hook
// records by session, moving session time until due sessions are claimed (or all the time), a seeded PRNG.
import type { Cluster, HookRecord } from './fixtures/redis-cluster.js';

/** The hook records of one session, by phase. */
export function hooksOf(hooks: HookRecord[], sid: string): { start: HookRecord[]; done: HookRecord[] } {
  const mine = hooks.filter((h) => h.sessionId === sid);
  return { start: mine.filter((h) => h.phase === 'start'), done: mine.filter((h) => h.phase === 'done') };
}

/**
 * Moves session time by `ms`, then until none of `due` is open any more: each node sweeps once per
 * sweep interval of session time, so a sweep that ran before a release landed gets another turn.
 */
export async function advanceUntilClaimed(cluster: Cluster, ms: number, due: string[], sweepIntervalMs = 1_000, timeoutMs = 10_000): Promise<void> {
  await cluster.advance(ms);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = (await Promise.all(due.map((sid) => cluster.isOpen(sid)))).filter(Boolean).length;
    if (open === 0) return;
    if (Date.now() > deadline) throw new Error(`${open} of ${due.length} due session(s) still open ${timeoutMs} ms after the deadline`);
    await new Promise((resolve) => setTimeout(resolve, 20));
    await cluster.advance(sweepIntervalMs);
  }
}

/** A small seeded PRNG (mulberry32): the same seed replays the same run. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let r = Math.imul(a ^ (a >>> 15), 1 | a);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}

/** Moves session time on every live node, every `everyMs` of real time, so their sweeps run (and find dead nodes). */
export function tickClocks(cluster: Cluster, sweepIntervalMs: number, everyMs = 50): { stop(): void } {
  let running = true;
  const loop = async (): Promise<void> => {
    while (running) {
      await cluster.advance(sweepIntervalMs).catch(() => {});
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
  };
  void loop();
  return { stop: () => { running = false; } };
}
