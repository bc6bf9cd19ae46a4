// A new session whose first init, on node x, outlasts a close another node y runs (y's drain gives up on
// it at closeTimeoutMs): the session was never made (x said no 'create', its request is refused or its
// init fails), yet y says 'close' and counts it, where the memory store says nothing for such a session.
// y cannot tell: what Redis holds of the process (busy, no state saved) is the same while x's init runs
// and while x's first request, made and said, runs its handler. README (ERR_SESSION_INIT_FAILED) states
// the limitation ("on Redis when the close runs on the node that made the session, elsewhere that node
// cannot tell"). Marked to do: telling would take a write to Redis when each new session's init ends.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type RequestLease } from '../src/index.js';
import { track } from './engine-harness.js';
import { deferred, eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { IP, node, settledAsTimePasses, stopAll, type Vars } from './redis-crossing.js';

for (const ends of ['resolves', 'rejects'] as const) {
  test(`redis: a new session's first init on one node outlasts its close on another, then ${ends}: the session never made is not said closed on the node that closed it`, { timeout: 20_000, todo: 'another node cannot tell a session never made (README, ERR_SESSION_INIT_FAILED)' }, async (t) => {
    const r = await redisForTest(t);
    if (r === undefined) return;
    const clock = new ManualClock();
    const initDone = deferred<Vars>();
    let initStarted = false;
    const x = await node(r, clock, { init: () => { initStarted = true; return initDone.promise; } });
    const y = await node(r, clock);
    const closesOnY: string[] = [];
    y.engine.on('close', (e) => closesOnY.push(e.sessionId));
    const leases: (RequestLease<Vars> | undefined)[] = [];
    try {
      const outcome = x.engine.acquire({ sessionId: undefined, ip: IP }).then((lease) => { leases.push(lease); return 'ran'; }, (error: { code?: string }) => error.code);
      assert.ok(await eventually(() => initStarted && x.engine.sessions().length === 1, 5_000), 'init runs on x');
      const id = x.engine.sessions()[0]!.id;
      const closing = track(y.engine.closeSession(id));
      assert.ok(await settledAsTimePasses(clock, closing), "y's close gave up on the init and ended");
      if (ends === 'resolves') initDone.resolve({});
      else initDone.reject(new Error('database down'));
      assert.equal(await outcome, ends === 'resolves' ? 'ERR_SESSION_CLOSED' : 'ERR_SESSION_INIT_FAILED');
      assert.equal(x.engine.stats().created, 0, 'never made');
      assert.deepEqual(closesOnY, [], 'no close said for a session never made');
      assert.equal(y.engine.stats().closed.closed, 0, 'nor counted');
    } finally {
      await stopAll(clock, leases, undefined, x, y);
    }
  });
}
