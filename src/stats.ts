import type { CloseReason } from './session.js';

/** Mutable counters behind `engine.stats()`. */
export interface Counters {
  created: number;
  closed: Record<CloseReason, number>;
  rejected: { sessionLimit: number; processLimit: number; queueFull: number; queueTimeout: number; stopped: number; ipMismatch: number; storeUnavailable: number };
  hookErrors: number;
  hookTimeouts: number;
  drainTimeouts: number;
  handlerErrors: number;
  taskErrors: number;
  storeErrors: number;
}

export function createCounters(): Counters {
  return {
    created: 0,
    closed: { evicted: 0, timeout: 0, closed: 0, shutdown: 0 },
    rejected: { sessionLimit: 0, processLimit: 0, queueFull: 0, queueTimeout: 0, stopped: 0, ipMismatch: 0, storeUnavailable: 0 },
    hookErrors: 0,
    hookTimeouts: 0,
    drainTimeouts: 0,
    handlerErrors: 0,
    taskErrors: 0,
    storeErrors: 0,
  };
}
