import type { SessionVars } from '../process.js';
import type { StoreContext, StoreGauges } from '../store.js';
import type { SessionInfo } from '../types.js';
import type { RedisCloser } from './closer.js';
import { handleCookieExpiresAtMs, type SessionHandle } from './node.js';
import type { TurnQueues } from './turns.js';

// What a Redis node answers of the sessions it knows (it has served them): engine.sessions(),
// sessionExpiration(), sessionProcessCount() and the gauges of stats(). A stopped node answers as a
// stopped memory engine does (the callers in sessions.ts), whatever onStop left in the cluster.

export function knownExpiresAtMs<Vars extends SessionVars>(handle: SessionHandle<Vars> | undefined, ctx: Pick<StoreContext<Vars>, 'options'>): number | undefined {
  return handle === undefined || handle.state !== 'open' ? undefined : handleCookieExpiresAtMs(handle, ctx);
}

export function knownProcessCount<Vars extends SessionVars>(handle: SessionHandle<Vars> | undefined): number {
  return handle === undefined || handle.state !== 'open' ? 0 : handle.processCount;
}

/** The open sessions this node has served (the cluster's are in Redis). */
export function knownSessions<Vars extends SessionVars>(known: Iterable<SessionHandle<Vars>>, turns: TurnQueues, ctx: Pick<StoreContext<Vars>, 'options'>): SessionInfo[] {
  const out: SessionInfo[] = [];
  for (const h of known) {
    if (h.state !== 'open') continue;
    out.push({
      id: h.id, ip: h.ip, createdAt: new Date(h.createdAtMs), lastActivityAt: new Date(h.lastActivityAtMs),
      expiresAt: new Date(handleCookieExpiresAtMs(h, ctx)), processCount: h.processCount,
      busy: h.runs.size > 0 || h.companions.size > 0, queuedRequests: turns.waiting(h.id), locks: h.processesHere().flatMap((p) => p.locks.held()),
    });
  }
  return out;
}

/**
 * Cluster-wide counts as of the last sweep; queued requests and locks as this node sees them. Stopped: no
 * session or process of the cluster's (the last sweep's figures would stay for good), only its own
 * closes still running.
 */
export function nodeGauges<Vars extends SessionVars>(known: Iterable<SessionHandle<Vars>>, turns: TurnQueues, closer: RedisCloser<Vars>, stopped: boolean): StoreGauges {
  const queuedRequests = turns.total;
  let locksHeld = 0;
  for (const h of known) for (const p of h.processesHere()) locksHeld += p.lockCount;
  if (stopped) return { sessions: 0, idleSessions: 0, processes: 0, closingSessions: closer.activeCount, queuedRequests, locksHeld };
  return { ...closer.gauges, closingSessions: Math.max(closer.gauges.closingSessions, closer.activeCount), queuedRequests, locksHeld };
}
