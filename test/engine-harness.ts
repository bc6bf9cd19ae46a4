// Shared by the engine-level suites: leases that cleanup can always release, and promises followed
// without awaiting them (a hang becomes a failed assertion, never a stalled run).
import type { ManualClock, RequestLease, SessionEngine, SessionVars } from '../src/index.js';
import { settle } from './helpers.js';

/** Follows a promise without awaiting it. */
export function track<T>(promise: Promise<T>): { settled: boolean; value: T | undefined; error: unknown } {
  const state: { settled: boolean; value: T | undefined; error: unknown } = { settled: false, value: undefined, error: undefined };
  promise.then((value) => { state.settled = true; state.value = value; }, (error: unknown) => { state.settled = true; state.error = error; });
  return state;
}

/** `open` acquires (from `defaultIp` unless told otherwise) and remembers the lease; `shutdown` releases them all and stops the engine. */
export function leaseTracker(defaultIp: string) {
  const leases = new Set<{ release(): void }>();
  return {
    async open<V extends SessionVars>(engine: SessionEngine<V>, sessionId?: string, ip = defaultIp): Promise<RequestLease<V>> {
      const lease = await engine.acquire({ sessionId, ip });
      leases.add(lease);
      return lease;
    },
    /** Never waits forever: a broken engine must not stall the file. */
    async shutdown<V extends SessionVars>(engine: SessionEngine<V>, clock?: ManualClock): Promise<void> {
      for (const lease of leases) lease.release();
      leases.clear();
      const stopped = track(engine.stop());
      for (let round = 0; round < 5 && !stopped.settled; round++) {
        await settle();
        if (!stopped.settled) clock?.advance(engine.getOption('closeTimeoutMs'));
      }
    },
  };
}
