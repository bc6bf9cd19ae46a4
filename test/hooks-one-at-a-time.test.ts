// Spec edge case 21: the close hook runs in the session's own context, one hook at a time per session;
// hooks of different sessions may run at the same time. Checked with asynchronous hooks of a session
// with two processes (4D Mobile), and of two sessions closing together.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../src/index.js';
import { deferred, engineWithErrors, settle } from './helpers.js';

const GUARD = { timeout: 5_000 };

test('the asynchronous hooks of one session\'s processes never overlap; hooks of two sessions may', GUARD, async () => {
  const gates: Array<{ session: string; process: string; release: () => void }> = [];
  let running = new Map<string, number>();
  let overlapInSession = false;
  let overlapAcross = false;
  const { engine, errors } = engineWithErrors({
    clock: new ManualClock(),
    onClose: async (proc) => {
      const now = (running.get(proc.sessionId) ?? 0) + 1;
      running.set(proc.sessionId, now);
      if (now > 1) overlapInSession = true;
      if (running.size > 1) overlapAcross = true;
      const gate = deferred();
      gates.push({ session: proc.sessionId, process: proc.processId, release: () => gate.resolve() });
      await gate.promise;
      const left = (running.get(proc.sessionId) ?? 1) - 1;
      if (left === 0) running.delete(proc.sessionId);
      else running.set(proc.sessionId, left);
    },
  });
  const holdTasks = deferred();
  try {
    const sessions: string[] = [];
    for (let i = 0; i < 2; i++) {
      const lease = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
      lease.run(() => lease.proc.spawn('mobile', (proc) => new Promise<void>((resolve) => { proc.signal.addEventListener('abort', () => resolve()); void holdTasks.promise.then(resolve); })));
      lease.release();
      sessions.push(lease.sessionId);
    }
    await settle();
    assert.deepEqual(sessions.map((id) => engine.sessionProcessCount(id)), [2, 2]);
    const closes = sessions.map((id) => engine.closeSession(id));
    let settled = false;
    const all = Promise.all(closes).then((value) => { settled = true; return value; });
    for (let round = 0; round < 40 && !settled; round++) {
      await settle();
      for (const gate of gates.splice(0, gates.length)) gate.release();
    }
    assert.equal(settled, true, 'both closes ended');
    assert.deepEqual(await all, [true, true]);
    assert.equal(overlapInSession, false, 'two hooks of one session ran at the same time');
    assert.equal(overlapAcross, true, 'hooks of different sessions may run at the same time');
    assert.deepEqual(errors, []);
    running = new Map();
  } finally {
    holdTasks.resolve();
    for (const gate of gates) gate.release();
    await engine.stop();
  }
});
