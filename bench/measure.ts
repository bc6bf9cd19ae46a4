// One measured run (a server under load, its counters read before and after) and the returning-visitors
// checks: shared by bench/http.ts and bench/adapters.ts.

import type { ServerChild } from './children.js';
import { runLoad, type LoadOptions } from './load.js';
import { foreignCores, readCoreBusy } from './noise.js';
import { RETURNING_SESSIONS, type ServerSnapshot } from './protocol.js';
import type { Check, ServerRound } from './report.js';

/**
 * A process the server under test works with (the Redis its sessions live in): its CPU time during a run
 * is the system's own, not another program's, so it is not counted as a disturbance.
 */
export interface Partner {
  readonly name: string;
  /** CPU seconds (user + system) the partner has used since it started. */
  cpuSeconds(): Promise<number>;
}

/** One server under load for one round, with the server's own counters read before and after. */
export async function measure(server: ServerChild, load: Omit<LoadOptions, 'port'>, partner?: Partner): Promise<ServerRound> {
  const before = await server.snapshot();
  // Read around the core readings, so its window covers theirs.
  const partnerBefore = await partner?.cpuSeconds();
  const busyBefore = readCoreBusy();
  const client = await runLoad({ ...load, port: server.port });
  const busyAfter = readCoreBusy();
  const partnerAfter = await partner?.cpuSeconds();
  // The collection (servers with --expose-gc) comes after the CPU reading: counted in no run.
  const after = await server.snapshot(true);
  const serverCpuSeconds = (after.cpuMicros - before.cpuMicros) / 1e6;
  const partnerSeconds = partnerBefore === undefined || partnerAfter === undefined ? undefined : partnerAfter - partnerBefore;
  const serverErrors = after.errors - before.errors;
  const problems: string[] = [];
  if (client.errors + client.timeouts > 0) problems.push(`${client.errors} errors, ${client.timeouts} timeouts`);
  if (client.non2xx > 0) problems.push(`${client.non2xx} non-2xx`);
  if (serverErrors > 0) problems.push(`${serverErrors} server errors`);
  if (client.requests === 0) problems.push('no request completed');
  return {
    kind: server.kind,
    client,
    serverCpu: serverCpuSeconds / ((after.atMs - before.atMs) / 1000),
    handled: after.handled - before.handled,
    liveBytes: after.heapUsedBytes + after.externalBytes,
    serverErrors,
    otherCores: foreignCores(busyBefore, busyAfter, client.clientCpuSeconds + serverCpuSeconds + (partnerSeconds ?? 0), client.wallSeconds),
    ...(partner === undefined || partnerSeconds === undefined ? {} : { partner: { name: partner.name, cores: partnerSeconds / client.wallSeconds } }),
    problems,
  };
}

/** Nothing evicted or refused: every measured request really was a returning visitor. */
export function returningChecks(end: ServerSnapshot): Check[] {
  const e = end.engine!;
  const closed = Object.values(e.closed).reduce((a, b) => a + b, 0);
  const rejected = Object.values(e.rejected).reduce((a, b) => a + b, 0);
  return [
    { name: 'no session evicted or closed', ok: closed === 0, detail: `closed ${JSON.stringify(e.closed)}` },
    { name: `exactly ${RETURNING_SESSIONS} sessions, all created before the load`, ok: e.created === RETURNING_SESSIONS && e.sessions === RETURNING_SESSIONS, detail: `created ${e.created}, open ${e.sessions}` },
    { name: 'no request refused', ok: rejected === 0, detail: `rejected ${JSON.stringify(e.rejected)}` },
  ];
}
