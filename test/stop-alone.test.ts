// engine.stop() in a process with nothing else to do: the engine's timers are unref'ed (they never keep
// a server alive), so the stop must hold the event loop itself until its bounded drain and hooks are over.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { SessionEngine } from '../src/index.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

test('a stop with nothing else holding the event loop runs to its end: the drain and the hook time out on their bounds, every process is hooked, the stop resolves', { timeout: 60_000 }, async () => {
  const { code, stdout } = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
    const child = execFile(process.execPath, ['--import', 'tsx', 'test/fixtures/stop-alone.ts'], { cwd: ROOT, timeout: 30_000 }, (_error, out) => resolve({ code: child.exitCode, stdout: out }));
  });
  const lines = stdout.trim().split('\n');
  assert.equal(code, 0, stdout);
  assert.ok(lines.includes('error ERR_SESSION_DRAIN_TIMEOUT'), stdout);
  assert.ok(lines.includes('error ERR_SESSION_HOOK_TIMEOUT'), stdout);
  assert.equal(lines.at(-1), 'stopped ["web","worker"]', stdout);
});

test('a request that stops the engine itself still knows its session after the stop', async () => {
  const engine = new SessionEngine();
  const lease = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
  const seen = await lease.run(async () => {
    await engine.stop();
    await Promise.resolve();
    return engine.currentSessionId();
  });
  assert.equal(seen, lease.sessionId);
  lease.release();
});
