// Other programs on the machine: CPU time spent on each core that is neither the server's nor the load
// generator's. Pinning keeps our two processes apart, but it cannot keep others away on a shared host;
// this says when a round was disturbed. Linux only (/proc/stat); elsewhere nothing is reported.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Busy CPU seconds per core since boot (everything but idle and iowait), or undefined without /proc/stat. */
export type CoreBusy = readonly number[] | undefined;

const TICKS_PER_SECOND = ((): number => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

export function readCoreBusy(): CoreBusy {
  let text: string;
  try {
    text = readFileSync('/proc/stat', 'utf8');
  } catch {
    return undefined;
  }
  const busy: number[] = [];
  for (const line of text.split('\n')) {
    const match = /^cpu(\d+)\s+(.*)$/.exec(line);
    if (match === null) continue;
    // user nice system idle iowait irq softirq steal …: busy is the sum minus idle and iowait.
    const ticks = match[2]!.trim().split(/\s+/).map(Number);
    const total = ticks.slice(0, 8).reduce((a, b) => a + b, 0);
    busy[Number(match[1])] = (total - (ticks[3] ?? 0) - (ticks[4] ?? 0)) / TICKS_PER_SECOND;
  }
  return busy;
}

/**
 * CPU used by other programs between two readings, in cores (0.5 = half a core on average), given the
 * CPU seconds our own processes used. Undefined when unknown. Loopback networking done in softirq context
 * can be counted here too, so a few percent is normal.
 */
export function foreignCores(before: CoreBusy, after: CoreBusy, ownSeconds: number, wallSeconds: number): number | undefined {
  if (before === undefined || after === undefined || wallSeconds <= 0) return undefined;
  const busy = after.reduce((sum, b, core) => sum + b - (before[core] ?? b), 0);
  return Math.max(0, (busy - ownSeconds) / wallSeconds);
}
