import type { RequestIdentity } from '../src/index.js';

/** A request identity (from 127.0.0.1) whose client the test makes leave while its request waits. */
export function leavingClient(sessionId: string): { identity: RequestIdentity; leave(): void; watched(): boolean } {
  let onLeft: (() => void) | undefined;
  return {
    identity: { sessionId, ip: '127.0.0.1', watchClientLeaving: (left) => { onLeft = left; return () => { onLeft = undefined; }; } },
    leave: () => onLeft?.(),
    watched: () => onLeft !== undefined,
  };
}
