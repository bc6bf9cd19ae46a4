// Process ids are lock owners. A lock manager shared between Node processes (a RedisLockManager given as
// the `locks` of memory-store engines on several nodes) must not take two nodes' processes, or a node's
// process and one of its earlier run (a crashed node's locks outlive it), for one owner: each Node
// process's ids end with a random suffix of their own. Before, every node's first process was p1, and
// both got the same record.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { redisForTest } from './redis-support.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface ChildReport { processId: string; locked: boolean; holder: string | null }

function runNode(url: string, prefix: string): Promise<ChildReport> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', 'test/fixtures/lock-node-child.ts', url, prefix], { cwd: ROOT, timeout: 30_000 }, (error, stdout, stderr) => {
      if (error !== null) return reject(new Error(`lock node failed: ${error.message}\n${stderr}`));
      try {
        resolve(JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as ChildReport);
      } catch {
        reject(new Error(`no report from the lock node:\n${stdout}\n${stderr}`));
      }
    });
  });
}

test('two nodes (Node processes) of memory-store engines sharing a RedisLockManager: the second one\'s first process does not get the record the first one\'s holds', { timeout: 60_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const first = await runNode(r.url, r.prefix);
  assert.equal(first.locked, true, 'the first node locks the record');
  const second = await runNode(r.url, r.prefix);
  assert.notEqual(second.processId, first.processId, 'process ids differ between Node processes');
  assert.equal(second.locked, false, `the second node's process ${second.processId} got the record held by ${first.processId}`);
  assert.equal(second.holder, first.processId, 'lockedBy names the first node\'s process');
  assert.match(first.processId, /^p[0-9a-z]+$/);
});
