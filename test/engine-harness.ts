// Shared by the engine-level suites: leases that cleanup can always release, and promises followed
// without awaiting them (a hang becomes a failed assertion, never a stalled run).
import { after, before } from 'node:test';
import type { CloseEvent, CreateEvent, ManualClock, RequestLease, SessionEngine, SessionVars } from '../src/index.js';
import { settle } from './helpers.js';

/** Engine timers are unref'ed: without this, a hung test would end the event loop and cancel every later test. Call once per file. */
export function keepLoopAlive(): void {
  let keepAlive: NodeJS.Timeout | undefined;
  before(() => { keepAlive = setInterval(() => {}, 60_000); });
  after(() => clearInterval(keepAlive));
}

/** Resolves when the signal aborts (at once if it already has). */
export function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

/** Follows a promise without awaiting it. */
export function track<T>(promise: Promise<T>): { settled: boolean; value: T | undefined; error: unknown } {
  const state: { settled: boolean; value: T | undefined; error: unknown } = { settled: false, value: undefined, error: undefined };
  promise.then((value) => { state.settled = true; state.value = value; }, (error: unknown) => { state.settled = true; state.error = error; });
  return state;
}

/**
 * `open` acquires (from `defaultIp` unless told otherwise) and remembers the lease; `visit` makes one
 * complete request (acquire, optional work in the request's context, release) and returns its session
 * id; `shutdown` releases every lease and stops the engine.
 */
export function leaseTracker(defaultIp: string) {
  const leases = new Set<{ release(): void }>();
  async function open<V extends SessionVars>(engine: SessionEngine<V>, sessionId?: string, ip = defaultIp): Promise<RequestLease<V>> {
    const lease = await engine.acquire({ sessionId, ip });
    leases.add(lease);
    return lease;
  }
  async function visit<V extends SessionVars>(engine: SessionEngine<V>, sessionId?: string, work?: (lease: RequestLease<V>) => void | Promise<void>): Promise<string> {
    const lease = await open(engine, sessionId);
    try {
      await lease.run(async () => work?.(lease));
    } finally {
      lease.release();
    }
    return lease.sessionId;
  }
  /** Never waits forever: a broken engine must not stall the file. */
  async function shutdown<V extends SessionVars>(engine: SessionEngine<V>, clock?: ManualClock): Promise<void> {
    for (const lease of leases) lease.release();
    leases.clear();
    const stopped = track(engine.stop());
    for (let round = 0; round < 5 && !stopped.settled; round++) {
      await settle();
      if (!stopped.settled) clock?.advance(engine.getOption('closeTimeoutMs'));
    }
  }
  return { open, visit, shutdown };
}

/** The engine's 'create' and 'close' events, as they come. */
export function record<V extends SessionVars>(engine: SessionEngine<V>): { creates: CreateEvent[]; closes: CloseEvent[] } {
  const creates: CreateEvent[] = [];
  const closes: CloseEvent[] = [];
  engine.on('create', (event) => creates.push(event));
  engine.on('close', (event) => closes.push(event));
  return { creates, closes };
}
