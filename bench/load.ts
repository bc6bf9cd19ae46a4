// Driving a server with autocannon (in this process, pinned to the client core) and measuring one round.

import * as http from 'node:http';
import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';

export interface LoadOptions {
  readonly port: number;
  readonly connections: number;
  readonly pipelining: number;
  /** Seconds. */
  readonly duration: number;
  /** Requests in all: the run ends after them, whatever `duration` says (bench/instructions.ts). */
  readonly amount?: number;
  /** Cookie header values; each connection cycles through its own slice. Undefined: no cookie (newcomers). */
  readonly cookies: readonly string[] | undefined;
}

/** What the client saw in one round. */
export interface ClientMeasure {
  readonly requests: number;
  readonly reqPerSec: number;
  readonly latencyP50Ms: number;
  readonly latencyP99Ms: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly non2xx: number;
  /** This process's CPU time over the round / wall time: 1 = one core saturated. */
  readonly clientCpu: number;
  readonly clientCpuSeconds: number;
  readonly wallSeconds: number;
}

export async function runLoad(options: LoadOptions): Promise<ClientMeasure> {
  const cpuBefore = process.cpuUsage();
  const wallBefore = performance.now();
  const result = await autocannon({
    url: `http://127.0.0.1:${options.port}/`,
    connections: options.connections,
    pipelining: options.pipelining,
    ...(options.amount === undefined ? { duration: options.duration } : { amount: options.amount }),
    ...(options.cookies === undefined ? {} : { setupClient: cookieRotation(options.cookies, options.connections) }),
  });
  const wallMs = performance.now() - wallBefore;
  const cpu = process.cpuUsage(cpuBefore);
  return {
    requests: result.requests.total,
    // Completed requests over autocannon's own measured span (it stops on a 1 s sample boundary).
    reqPerSec: result.requests.total / result.duration,
    latencyP50Ms: result.latency.p50,
    latencyP99Ms: result.latency.p99,
    errors: result.errors,
    timeouts: result.timeouts,
    non2xx: result.non2xx,
    clientCpu: (cpu.user + cpu.system) / 1000 / wallMs,
    clientCpuSeconds: (cpu.user + cpu.system) / 1e6,
    wallSeconds: wallMs / 1000,
  };
}

/**
 * Gives connection i the cookies i, i + C, i + 2C… (C connections): disjoint slices, so two connections
 * never use one session at once. A session serves one request at a time (processesPerSession 1), and a
 * shared session would measure queueing, not the per-request cost. Each connection behaves like a few
 * browsers taking turns, and every session is visited every round.
 * Static request entries (no setupRequest) are serialised once per connection, so the rotation costs the
 * client nothing per request.
 */
function cookieRotation(cookies: readonly string[], connections: number): (client: autocannon.Client) => void {
  let next = 0;
  return (client) => {
    const index = next++ % connections;
    const mine: autocannon.Request[] = [];
    for (let i = index; i < cookies.length; i += connections) mine.push({ method: 'GET', path: '/', headers: { cookie: cookies[i]! } });
    client.setRequests(mine);
  };
}

/**
 * Creates `count` sessions by sending one cookie-less request each, and returns the Cookie header values
 * (`name=id`) the server set, in order. A few requests in flight at once keep this quick.
 */
export async function createSessions(port: number, count: number, cookieName: string): Promise<string[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  const cookies: string[] = new Array<string>(count);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      cookies[i] = await requestCookie(port, agent, cookieName);
    }
  };
  try {
    await Promise.all(Array.from({ length: 8 }, worker));
  } finally {
    agent.destroy();
  }
  if (new Set(cookies).size !== count) throw new Error(`expected ${count} distinct session cookies`);
  return cookies;
}

function requestCookie(port: number, agent: http.Agent, cookieName: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
      res.resume();
      const setCookie = res.headers['set-cookie']?.find((c) => c.startsWith(`${cookieName}=`));
      if (res.statusCode !== 200 || setCookie === undefined) {
        reject(new Error(`session creation answered ${res.statusCode} without a ${cookieName} cookie`));
        return;
      }
      const end = setCookie.indexOf(';');
      res.on('end', () => resolve(end === -1 ? setCookie : setCookie.slice(0, end)));
    }).on('error', reject);
  });
}
