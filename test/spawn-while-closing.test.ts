// A session that has started closing gains no process (close.ts relies on it: "a closing session gains no
// process (spawn refuses)"). The existing test covers a process torn down already (after the close);
// these cover the window before the teardown: a request still running while the close drains, and the
// onClose hook itself. A process spawned there would be added to a session the engine no longer counts
// (maxConcurrentProcesses would lose a place for good) and would run a task in a context being torn down.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SessionError } from '../src/index.js';
import { engineWithErrors, settle } from './helpers.js';
import { keepLoopAlive, leaseTracker } from './engine-harness.js';

const IP = '203.0.113.9';
const { open, shutdown } = leaseTracker(IP);
const GUARD = { timeout: 5_000 };

keepLoopAlive();

test('a request still running while its session closes cannot spawn: ERR_SESSION_CLOSED, and no place is lost', GUARD, async () => {
  const { engine } = engineWithErrors();
  try {
    const lease = await open(engine);
    const closing = engine.closeSession(lease.sessionId);
    await settle();
    assert.equal(lease.proc.signal.aborted, true, 'the close has started');
    assert.throws(() => lease.proc.spawn('late', async () => {}), { code: 'ERR_SESSION_CLOSED' });
    lease.release();
    assert.equal(await closing, true);
    assert.equal(engine.stats().processes, 0, 'every place is given back');
  } finally {
    await shutdown(engine);
  }
});

test('onClose cannot spawn a process in the session it closes: ERR_SESSION_CLOSED, one hook, no place lost', GUARD, async () => {
  let spawnError: unknown;
  let hooks = 0;
  let taskRan = false;
  const { engine } = engineWithErrors({
    onClose: (proc) => {
      hooks++;
      try {
        proc.spawn('from-hook', async () => { taskRan = true; });
      } catch (error) {
        spawnError = error;
      }
    },
  });
  try {
    const lease = await open(engine);
    lease.release();
    assert.equal(await engine.closeSession(lease.sessionId), true);
    await settle();
    assert.ok(spawnError instanceof SessionError, 'spawn from the hook throws');
    assert.equal((spawnError as SessionError).code, 'ERR_SESSION_CLOSED');
    assert.equal(taskRan, false);
    assert.equal(hooks, 1);
    assert.equal(engine.stats().processes, 0, 'every place is given back');
  } finally {
    await shutdown(engine);
  }
});
