// The mode changed at run time (setOption('mode'), or 4D's WEB SET OPTION on selector 70 or 90): each
// session keeps the mode it was created in, on both stores (spec edge case 20: a change takes effect for
// what starts after it, as 4D applies it at the next web server start). So a legacy session's onClose
// still runs after a switch to 'scalable' (its context is saved), and a scalable session's never does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine } from '../src/index.js';
import { storeChoices } from './store-choices.js';

type Vars = { user?: string };
const IP = '127.0.0.1';
const MINUTE = 60_000;

const stores = storeChoices({ pollIntervalMs: 5, sweepIntervalMs: 1_000 });

for (const [name, storeFor] of stores) {
  test(`${name}: after a switch to 'scalable', a session made in 'legacy' mode is still closed with its hook (closeSession, timeout, stop), keeps its IP check, and one made in 'scalable' mode is not closable and never hooked`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const hooked: Array<[string | undefined, string]> = [];
    const engine = new SessionEngine<Vars>({ clock, inactiveProcessTimeoutMs: 10 * MINUTE, onClose: (proc, reason) => { hooked.push([proc.vars.user, reason]); }, ...choice.options });
    try {
      const open = async (user: string): Promise<string> => {
        const lease = await engine.acquire({ sessionId: undefined, ip: IP });
        lease.proc.vars.user = user;
        lease.release();
        return lease.sessionId;
      };
      const ann = await open('ann');
      await open('bob');
      engine.setOption('mode', 'scalable');
      const dan = await open('dan');
      // A legacy session keeps its IP check; a scalable one has none.
      await assert.rejects(engine.acquire({ sessionId: ann, ip: '127.0.0.2' }), { code: 'ERR_SESSION_IP_MISMATCH' });
      const danElsewhere = await engine.acquire({ sessionId: dan, ip: '127.0.0.2' });
      assert.equal(danElsewhere.sessionId, dan);
      danElsewhere.release();
      // closeSession: the legacy session closes with its hook; the scalable one cannot be closed.
      assert.equal(await engine.closeSession(ann), true);
      assert.equal(await engine.closeSession(dan), false);
      assert.deepEqual(hooked, [['ann', 'closed']]);
      // Back to legacy: the session made in scalable mode stays scalable.
      engine.setOption('mode', 'legacy');
      assert.equal(await engine.closeSession(dan), false);
      // A timeout closes the legacy session made before the switch with its hook.
      clock.advance(11 * MINUTE);
      const timedOut = async (): Promise<boolean> => hooked.some(([user]) => user === 'bob');
      for (let i = 0; i < 200 && !(await timedOut()); i++) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.ok(hooked.some(([user, reason]) => user === 'bob' && reason === 'timeout'), JSON.stringify(hooked));
      assert.ok(!hooked.some(([user]) => user === 'dan'), 'the scalable session is never hooked');
    } finally {
      await engine.stop();
    }
    assert.ok(!hooked.some(([user]) => user === 'dan'), 'not at stop either');
  });
}

for (const [name, storeFor] of stores) {
  test(`${name}: closeSession on a session made in 'scalable' mode changes nothing, not even for a moment: the cookie of its running request stays, and during stop() it is false too`, { timeout: 20_000 }, async (t) => {
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
      engine.setOption('mode', 'none');
      const closed = engine.closeSession(busy.sessionId);
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
