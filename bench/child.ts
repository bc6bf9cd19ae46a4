// The child side of a benchmark server: listen on 127.0.0.1 port 0, report the port over IPC, answer
// snapshot requests, and exit when asked or when the parent goes away. Shared by bench/server.ts and
// bench/adapter-server.ts so every server under load speaks the same protocol.

import type * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { EngineStats } from '../src/index.js';
import type { ChildMessage, ParentMessage } from './protocol.js';

/** The counters a server keeps; the snapshot adds CPU time and a timestamp. */
export interface ChildCounters {
  readonly handled: number;
  readonly hooks: number;
  readonly errors: number;
  readonly engine: EngineStats | undefined;
  readonly peerSessionsCreated?: number;
}

/** `gc()` when node runs with --expose-gc. */
const collectGarbage = (globalThis as { gc?: () => void }).gc;

export function serveOverIpc(server: http.Server, counters: () => ChildCounters): void {
  const send = (message: ChildMessage): void => {
    process.send?.(message);
  };
  process.on('message', (message: ParentMessage) => {
    if (message.type === 'snapshot') {
      // CPU and time first: a collection asked for at the end of a run is counted in no run.
      const cpu = process.cpuUsage();
      const atMs = performance.now();
      if (message.collect === true) collectGarbage?.();
      const memory = process.memoryUsage();
      send({ type: 'snapshot', snapshot: { ...counters(), cpuMicros: cpu.user + cpu.system, atMs, heapUsedBytes: memory.heapUsed, externalBytes: memory.external, rssBytes: memory.rss } });
    } else if (message.type === 'exit') {
      shutdown();
    }
  });
  // The parent died or closed the channel: never linger pinned to a core.
  process.on('disconnect', () => shutdown());

  function shutdown(): void {
    server.closeAllConnections();
    server.close();
    // process.exit (not a drain) ends the run promptly; it still writes a --cpu-prof profile.
    process.exit(0);
  }

  // 127.0.0.1 only: the benchmark is loopback, never reachable from outside.
  server.listen(0, '127.0.0.1', () => {
    send({ type: 'ready', port: (server.address() as AddressInfo).port });
  });
}
