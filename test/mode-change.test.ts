// The mode changed at run time (setOption('mode'), or 4D's WEB SET OPTION on selector 70 or 90) applies
// at once to every session, on both stores (DESIGN.md's modes): in 'scalable' mode closeSession is a
// no-op returning false and onClose never runs, whenever the session was made; back in 'legacy' mode
// every live session closes with its hook again, and the IP check follows the mode in effect.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type CloseEvent } from '../src/index.js';
import { storeChoices } from './store-choices.js';

type Vars = { user?: string };
const IP = '127.0.0.1';
const MINUTE = 60_000;

const stores = storeChoices({ pollIntervalMs: 5, sweepIntervalMs: 1_000 });

for (const [name, storeFor] of stores) {
  test(`${name}: after a switch to 'scalable', no session is closable nor hooked (closeSession, timeout), none is IP-checked; after a switch back to 'legacy', every session is, the ones made in 'scalable' mode too`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const hooked: Array<[string | undefined, string]> = [];
    const engine = new SessionEngine<Vars>({ clock, inactiveProcessTimeoutMs: 10 * MINUTE, onClose: (proc, reason) => { hooked.push([proc.vars.user, reason]); }, ...choice.options });
    const closes: CloseEvent[] = [];
    engine.on('close', (event) => closes.push(event));
    try {
      const open = async (user: string): Promise<string> => {
        const lease = await engine.acquire({ sessionId: undefined, ip: IP });
        lease.proc.vars.user = user;
        lease.release();
        return lease.sessionId;
      };
      const ann = await open('ann');
      const bob = await open('bob');
      engine.setOption('mode', 'scalable');
      const dan = await open('dan');
      // No IP check in scalable mode, for a session made before the switch too.
      const annElsewhere = await engine.acquire({ sessionId: ann, ip: '127.0.0.2' });
      assert.equal(annElsewhere.sessionId, ann);
      annElsewhere.release();
      // closeSession is a no-op for every session, the one made in legacy mode included.
      assert.equal(await engine.closeSession(ann), false);
      assert.equal(await engine.closeSession(dan), false);
      // A timeout in scalable mode closes bob without his hook.
      clock.advance(6 * MINUTE);
      for (const id of [ann, dan]) (await engine.acquire({ sessionId: id, ip: IP })).release(); // keep these two alive
      clock.advance(5 * MINUTE);
      for (let i = 0; i < 200 && closes.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.deepEqual(closes.map((c) => [c.sessionId, c.reason, c.processCount, c.hooksRun]), [[bob, 'timeout', 1, 0]], 'bob timed out, no hook in scalable mode');
      assert.deepEqual(hooked, []);

      // Back to legacy: the IP check is back, and every live session closes with its hook.
      engine.setOption('mode', 'legacy');
      await assert.rejects(engine.acquire({ sessionId: dan, ip: '127.0.0.2' }), { code: 'ERR_SESSION_IP_MISMATCH' });
      assert.equal(await engine.closeSession(dan), true, 'made in scalable mode, closed in legacy mode');
      assert.equal(await engine.closeSession(ann), true);
      assert.deepEqual(hooked, [['dan', 'closed'], ['ann', 'closed']]);
    } finally {
      await engine.stop();
    }
  });
}

for (const [name, storeFor] of stores) {
  test(`${name}: closeSession in 'scalable' mode changes nothing, not even for a moment: the cookie of its running request stays, and during stop() it is false too`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const engine = new SessionEngine<Vars>({ clock: new ManualClock(), mode: 'scalable', ...choice.options });
    const running = await engine.acquire({ sessionId: undefined, ip: IP });
    const closing = engine.closeSession(running.sessionId);
    assert.equal(running.cookie().action, 'set', 'the response being written keeps its cookie');
    assert.equal(await closing, false);
    assert.equal(running.cookie().action, 'set');
    running.release();
    const stopping = engine.stop();
    assert.equal(await engine.closeSession(running.sessionId), false);
    await stopping;
  });

  test(`${name}: a request waiting for a session that closes after a switch to 'none' gets a throw-away process, not a new session`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const engine = new SessionEngine<Vars>({ clock, closeTimeoutMs: 1_000, ...choice.options });
    try {
      const busy = await engine.acquire({ sessionId: undefined, ip: IP });
      const waiting = engine.acquire({ sessionId: busy.sessionId, ip: IP });
      await new Promise((resolve) => setTimeout(resolve, 50));
      const closed = engine.closeSession(busy.sessionId); // drains: waits for the busy request
      engine.setOption('mode', 'none');
      busy.release();
      assert.equal(await closed, true);
      const next = await waiting;
      assert.equal(next.sessionId, '', 'a throw-away process');
      assert.equal(next.cookie().action, 'none');
      next.release();
      assert.equal(engine.stats().created, 1);
    } finally {
      await engine.stop();
    }
  });
}
