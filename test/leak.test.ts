// Leak check: a child process with --expose-gc (test/fixtures/leak-child.ts) creates and closes
// sessions for all four reasons, in process and over HTTP, keeps WeakRefs to every WebProcess and its
// vars, forces GC and reports. Closed processes must be collected (while the engine still runs, and
// after it stopped), stopped engines too, and the heap after GC must come back near its baseline
// (taken with the same number of live sessions) after thousands more sessions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** Heap growth allowed after GC: GC noise is ±200 KB here; a leaked Session + WebProcess is ≥ 500 B, ×9,000 sessions. */
const MAX_GROWTH_BYTES = 1024 * 1024;

interface Report {
  baseline: number;
  after: number;
  closedAliveWhileRunning: number;
  closedWhileRunning: number;
  watched: number;
  watchedClosed: number;
  alive: number;
  engines: number;
  enginesAlive: number;
  requestObjects: number;
  requestObjectsAlive: number;
  reasons: Record<string, number>;
  hookProblems: number;
}

function runChild(): Promise<Report> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--expose-gc', '--import', 'tsx', 'test/fixtures/leak-child.ts'], {
      cwd: ROOT, env: { ...process.env, LEAK_ROUNDS: '6', LEAK_PER_ROUND: '1500' }, timeout: 60_000,
    }, (error, stdout, stderr) => {
      if (error !== null) return reject(new Error(`leak child failed: ${error.message}\n${stderr}`));
      try {
        resolve(JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as Report);
      } catch {
        reject(new Error(`no report from the leak child:\n${stdout}\n${stderr}`));
      }
    });
  });
}

test('closed sessions leave nothing behind: their processes and vars are collected, and the heap after GC returns to its baseline', { timeout: 90_000 }, async () => {
  const report = await runChild();
  for (const reason of ['closed', 'timeout', 'evicted', 'shutdown']) assert.ok((report.reasons[reason] ?? 0) > 0, `sessions closed with '${reason}': ${JSON.stringify(report.reasons)}`);
  assert.equal(report.hookProblems, 0, 'every hook saw its context, no error was reported');

  assert.ok(report.closedWhileRunning > 1_000, 'enough processes watched while the engine runs');
  assert.equal(report.closedAliveWhileRunning, 0, 'a running engine keeps no process of a closed session');
  assert.equal(report.watchedClosed, report.watched, 'every watched process belonged to a session that closed');
  assert.equal(report.alive, 0, `every closed process and its vars collected (${report.alive} of ${report.watched} alive)`);
  assert.equal(report.enginesAlive, 0, `stopped engines are collected (${report.enginesAlive} of ${report.engines} alive)`);
  assert.equal(report.requestObjectsAlive, 0, `request and response objects are collected (${report.requestObjectsAlive} of ${report.requestObjects} alive)`);

  const growth = report.after - report.baseline;
  assert.ok(growth < MAX_GROWTH_BYTES, `heap after GC ${report.after} B vs baseline ${report.baseline} B: grew ${growth} B`);
});
