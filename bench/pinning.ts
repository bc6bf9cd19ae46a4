// CPU pinning with taskset: the server on one core, the load generator on another, so neither steals
// cycles from the other and a saturated client cannot pass for a slow server.

import { execFileSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { buildLibraryForServers } from './library.js';
import { machineInfo } from './report.js';

export const SERVER_CORE = 0;
export const CLIENT_CORE = 1;

/** Why pinning is impossible here, or undefined when it is available. */
export function pinningUnavailable(): string | undefined {
  if (availableParallelism() < 2) return `only ${availableParallelism()} core available`;
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' });
  } catch {
    return 'taskset not found (util-linux)';
  }
  return undefined;
}

/**
 * Moves this whole process (every thread: `-a`) to `core`. Autocannon runs in this process, so this pins
 * the load generator. Returns an error message, or undefined on success.
 */
export function pinSelf(core: number): string | undefined {
  try {
    execFileSync('taskset', ['-a', '-cp', String(core), String(process.pid)], { stdio: 'ignore' });
    return undefined;
  } catch (error) {
    return `taskset -a -cp ${core} ${process.pid} failed: ${(error as Error).message}`;
  }
}

/** What a load benchmark knows once it has pinned itself: the machine, and where its servers go. */
export interface BenchStart {
  readonly machine: Record<string, string | number>;
  readonly pinned: boolean;
  /** The core for the servers (`StartOptions.core`), undefined when running unpinned. */
  readonly serverCore: number | undefined;
  /** The unpinned warning when there is one, for the run's summary. */
  readonly warnings: string[];
}

/**
 * Pins this process (the load generator) to the client core and prints the machine, the load (`loadLine`)
 * and the pinning: the opening lines of every load benchmark. Builds the library the servers load first.
 */
export function startBench(loadLine: string): BenchStart {
  buildLibraryForServers();
  const machine = machineInfo();
  const pinError = pinningUnavailable() ?? pinSelf(CLIENT_CORE);
  const pinned = pinError === undefined;
  const warnings = pinned ? [] : [`running UNPINNED (${pinError}): servers and load generator share cores, figures are noisier`];
  console.log(`machine: ${machine.cpuModel}, ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.platform}, node ${machine.node}, ${machine.date}`);
  console.log(`load: ${loadLine}`);
  console.log(`library: ${machine.library === 'dist' ? 'dist/ (the published build, tsc, rebuilt now)' : 'src/ through tsx (BENCH_LIBRARY=src)'}`);
  console.log(pinned ? `pinning: servers on core ${SERVER_CORE} (taskset -c), load generator on core ${CLIENT_CORE} (taskset -a -cp)` : `WARNING: ${warnings[0]}`);
  return { machine, pinned, serverCore: pinned ? SERVER_CORE : undefined, warnings };
}
