// Starting a benchmark server (bench/server.ts, bench/adapter-server.ts) in a child process, pinned to the
// server core, and talking to it over IPC.

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { ChildMessage, ParentMessage, ServerKind, ServerSnapshot, WorkloadName } from './protocol.js';

const SERVER_SCRIPT = fileURLToPath(new URL('./server.ts', import.meta.url));
const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
const START_TIMEOUT_MS = 30_000;

export interface ServerChild {
  readonly kind: ServerKind;
  readonly port: number;
  /** The server's process id (under taskset or valgrind too: both run node in their own process). */
  readonly pid: number;
  /** The server's counters; `collect`: after a full garbage collection (with --expose-gc), taken after its CPU time. */
  snapshot(collect?: boolean): Promise<ServerSnapshot>;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** The core to pin the server to (`taskset -c`), or undefined to run unpinned. */
  readonly core: number | undefined;
  /** Extra node flags, e.g. `--cpu-prof`. */
  readonly nodeFlags: readonly string[];
  /** A command node runs under, e.g. `['valgrind', '--tool=callgrind', …]` (it keeps the pid and the IPC channel). */
  readonly wrapper?: readonly string[];
  /** How long the server may take to report its port. @default 30 s */
  readonly startTimeoutMs?: number;
}

export function startServer(kind: ServerKind, workload: WorkloadName, options: StartOptions): Promise<ServerChild> {
  return startChild(kind, `${kind}/${workload}`, [SERVER_SCRIPT, kind, workload], options);
}

/** Starts `node --import tsx <scriptArgs…>` as a benchmark server (see bench/child.ts for its side). */
export async function startChild(kind: ServerKind, label: string, scriptArgs: readonly string[], options: StartOptions): Promise<ServerChild> {
  const nodeArgs = [...options.nodeFlags, '--import', 'tsx', ...scriptArgs];
  // `taskset -c N node …` pins from the first instruction, so every thread node starts (libuv pool, V8
  // platform and GC workers) inherits the mask; pinning a pid afterwards would move only the main thread.
  const node = [...(options.wrapper ?? []), process.execPath, ...nodeArgs];
  const [command, args] = options.core === undefined
    ? [node[0]!, node.slice(1)]
    : ['taskset', ['-c', String(options.core), ...node]];
  // taskset execs node in place, so the IPC descriptor (fd 3) reaches node unchanged.
  const child = spawn(command, args, { cwd: REPO_ROOT, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const port = await waitForReady(child, label, options.startTimeoutMs ?? START_TIMEOUT_MS);

  // Snapshots are asked one at a time (the parent awaits each), so replies arrive in order.
  const pending: ((snapshot: ServerSnapshot) => void)[] = [];
  child.on('message', (message: ChildMessage) => {
    if (message.type === 'snapshot') pending.shift()?.(message.snapshot);
  });

  return {
    kind,
    port,
    pid: child.pid!,
    snapshot: (collect = false) => new Promise<ServerSnapshot>((resolve, reject) => {
      if (child.exitCode !== null || !child.connected) return reject(new Error(`${kind} server is gone`));
      pending.push(resolve);
      send(child, { type: 'snapshot', collect });
    }),
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      if (child.connected) send(child, { type: 'exit' });
      else child.kill();
      await exited;
    },
  };
}

function send(child: ChildProcess, message: ParentMessage): void {
  child.send(message);
}

function waitForReady(child: ChildProcess, label: string, timeoutMs: number): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error(`${label} server did not report its port within ${timeoutMs} ms`));
    }, timeoutMs);
    const onMessage = (message: ChildMessage): void => {
      if (message.type !== 'ready') return;
      clearTimeout(timer);
      child.off('exit', onExit);
      child.off('message', onMessage);
      resolve(message.port);
    };
    const onExit = (code: number | null): void => {
      clearTimeout(timer);
      reject(new Error(`${label} server exited (code ${code}) before listening`));
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}
