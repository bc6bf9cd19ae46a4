// An engine releases its async context once stopped: Node keeps every enabled AsyncLocalStorage in one
// list that each new promise walks, so engines made and stopped by the thousand (tests, per-tenant
// engines) would slow every promise of the process. Stopped from inside one of its own runs (a request,
// a hook, a task: Fastify's app.close() from a route), the run goes on knowing its session; the context
// is released once that run is over: settled, or given up on by the engine (a task or hook that never
// settles, its process torn down), and the engine can be collected.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AsyncLocalStorage } from 'node:async_hooks';
import { queryObjects } from 'node:v8';
import { SessionEngine } from '../src/index.js';
import { collected, eventually } from './helpers.js';

const ENGINES = 10;
const IP = '127.0.0.1';

/** AsyncLocalStorage instances alive after full GCs: an enabled one is held by Node's list, a disabled one is collected with its engine. */
async function storagesAfterGc(): Promise<number> {
  await collected(new WeakRef({}), 200);
  return queryObjects(AsyncLocalStorage, { format: 'count' }) as number;
}

async function stopEngines(how: 'outside' | 'request' | 'hook' | 'task'): Promise<string[]> {
  const seenAfterStop: string[] = [];
  for (let i = 0; i < ENGINES; i++) {
    let stopped: Promise<void> | undefined;
    const engine: SessionEngine = new SessionEngine({ onClose: how === 'hook' ? () => (stopped ??= engine.stop()) : undefined });
    const lease = await engine.acquire({ sessionId: undefined, ip: IP });
    if (how === 'request') {
      await lease.run(async () => {
        await engine.stop();
        seenAfterStop.push(engine.currentSessionId() === lease.sessionId ? 'knows its session' : 'lost its session');
      });
    }
    if (how === 'task') {
      let done!: () => void;
      const ended = new Promise<void>((resolve) => { done = resolve; });
      lease.run(() => lease.proc.spawn('stopper', async () => { stopped = engine.stop(); done(); }));
      await ended;
    }
    lease.release();
    if (how === 'hook') await engine.closeSession(lease.sessionId);
    await stopped;
    await engine.stop();
  }
  return seenAfterStop;
}

for (const how of ['request', 'hook', 'task'] as const) {
  test(`engines stopped from inside a ${how} release their async context once that ${how} is over, as engines stopped from outside do`, { timeout: 30_000 }, async () => {
    const before = await storagesAfterGc();
    await stopEngines('outside');
    assert.ok((await storagesAfterGc()) - before <= 1, 'stopped from outside: released at once');
    const seen = await stopEngines(how);
    if (how === 'request') assert.deepEqual(new Set(seen), new Set(['knows its session']), 'the request goes on knowing its session');
    assert.ok(await eventually(async () => (await storagesAfterGc()) - before <= 1, 5_000),
      `${ENGINES} engines stopped from inside a ${how}: ${(await storagesAfterGc()) - before} AsyncLocalStorage instances still enabled`);
  });
}

for (const how of ['task', 'hook', 'init'] as const) {
  test(`engines stopped from inside ${how === 'init' ? 'an init that returned' : `a ${how} the engine gave up on (it never settles)`} release their async context and can be collected`, { timeout: 30_000 }, async (t) => {
    const keepAlive = setInterval(() => {}, 1_000); // the engine's own timers are unref'ed
    t.after(() => clearInterval(keepAlive));
    const before = await storagesAfterGc();
    const refs: WeakRef<SessionEngine>[] = [];
    for (let i = 0; i < ENGINES; i++) {
      let stopped: Promise<void> | undefined;
      const engine: SessionEngine = new SessionEngine({
        closeTimeoutMs: 50,
        init: how === 'init' ? () => { stopped ??= engine.stop(); return {}; } : undefined,
        onClose: how === 'hook' ? () => { stopped ??= engine.stop(); return new Promise<void>(() => {}); } : undefined,
      });
      engine.on('error', () => {});
      if (how === 'init') {
        await engine.acquire({ sessionId: undefined, ip: IP }).then((l) => l.release(), () => {});
        await stopped;
        refs.push(new WeakRef(engine));
        continue;
      }
      const lease = await engine.acquire({ sessionId: undefined, ip: IP });
      if (how === 'task') {
        let began!: () => void;
        const started = new Promise<void>((resolve) => { began = resolve; });
        lease.run(() => lease.proc.spawn('stuck', () => { stopped = engine.stop(); began(); return new Promise<void>(() => {}); }));
        await started;
      }
      lease.release();
      if (how === 'hook') await engine.closeSession(lease.sessionId);
      await stopped;
      refs.push(new WeakRef(engine));
    }
    assert.ok(await eventually(async () => (await storagesAfterGc()) - before <= 1, 5_000),
      `${ENGINES} engines stopped from inside a stuck ${how}: ${(await storagesAfterGc()) - before} AsyncLocalStorage instances still enabled`);
    assert.ok(await collected(refs[0]!, 3_000), 'a stopped engine is collected');
  });
}

test('a request that stopped its engine (its own session closed by the stop) still knows its session seconds later, until it ends', { timeout: 10_000 }, async () => {
  const engine = new SessionEngine();
  const lease = await engine.acquire({ sessionId: undefined, ip: IP });
  const seen = await lease.run(async () => {
    await engine.stop();
    const closed = lease.proc.closed;
    await new Promise((resolve) => setTimeout(resolve, 1_500)); // past the engine's check of the run (every second)
    return { closed, id: engine.currentSessionId() };
  });
  lease.release();
  assert.deepEqual(seen, { closed: true, id: lease.sessionId });
});

test('a task that stopped its engine (its process torn down by the stop) still knows its session seconds later', { timeout: 10_000 }, async () => {
  const engine = new SessionEngine();
  const lease = await engine.acquire({ sessionId: undefined, ip: IP });
  const seen = new Promise<{ closed: boolean; id: string }>((resolve) => {
    lease.run(() => lease.proc.spawn('stopper', async (proc) => {
      await engine.stop();
      const closed = proc.closed;
      await new Promise((done) => setTimeout(done, 1_500)); // past the engine's check of the run (every second)
      resolve({ closed, id: engine.currentSessionId() });
    }));
  });
  lease.release();
  assert.deepEqual(await seen, { closed: true, id: lease.sessionId });
});
