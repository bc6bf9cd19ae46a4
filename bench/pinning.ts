// CPU pinning with taskset: the server on one core, the load generator on another, so neither steals
// cycles from the other and a saturated client cannot pass for a slow server.

import { execFileSync } from 'node:child_process';
import { availableParallelism } from 'node:os';

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
