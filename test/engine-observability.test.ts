import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SessionEngine, type CloseEvent } from '../src/index.js';

test("the 'close' event says how many hooks ran: one per process in legacy mode, none in scalable mode", async () => {
  for (const mode of ['legacy', 'scalable'] as const) {
    const events: CloseEvent[] = [];
    const engine = new SessionEngine({ mode, maxSessions: 1, onClose: () => {} });
    engine.on('close', (event) => events.push(event));
    try {
      const first = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
      first.release();
      const second = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' }); // evicts the first
      second.release();
      await engine.stop();
      assert.deepEqual(events.map((e) => [e.reason, e.processCount, e.hooksRun]), [['evicted', 1, mode === 'legacy' ? 1 : 0], ['shutdown', 1, mode === 'legacy' ? 1 : 0]]);
    } finally {
      await engine.stop();
    }
  }
});

test('stats().locksHeld counts the records locked by processes of open sessions and drops when they are released', async () => {
  const engine = new SessionEngine();
  try {
    const a = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
    const b = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
    assert.equal(await a.proc.locks.tryLock('Orders', 1), true);
    assert.equal(await a.proc.locks.tryLock('Orders', 2), true);
    assert.equal(await b.proc.locks.tryLock('Orders', 2), false);
    assert.equal(await b.proc.locks.tryLock('Items', 'x'), true);
    assert.equal(engine.stats().locksHeld, 3);
    assert.equal(a.proc.lockCount, 2);
    await a.proc.locks.unlock('Orders', 1);
    a.release();
    await engine.closeSession(a.sessionId);
    assert.equal(engine.stats().locksHeld, 1);
    b.release();
  } finally {
    await engine.stop();
  }
});
