// A new session whose first init outlasts its close (closeSession or stop gives up waiting for it at
// closeTimeoutMs) was never made, on both stores: its close is neither said on 'close' nor counted,
// whether init then resolves (its request refused, ERR_SESSION_CLOSED) or rejects, also while that
// close's hooks still run; regenerated meanwhile, its 'create' names the id it runs under; and a Redis
// node's late release of it after the stop reports no store failure.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type SessionError } from '../src/index.js';
import { deferred, eventually, settle } from './helpers.js';
import { storeChoices } from './store-choices.js';
import { engineOn, IP, type Vars } from './init-failure-support.js';

const stores = storeChoices();

const sumClosed = (c: Record<string, number>): number => Object.values(c).reduce((a, b) => a + b, 0);

for (const [name, storeFor] of stores) {
  for (const how of ['stop', 'closeSession'] as const) for (const ends of ['resolves', 'rejects'] as const) {
    test(`${name}: ${how} gives up on a slow first init that then ${ends}: the session that was never created is neither said on 'close' nor counted in closed`, { timeout: 20_000 }, async (t) => {
      const choice = await storeFor(t);
      if (choice === 'skip') return;
      const clock = new ManualClock();
      const initDone = deferred<Vars>();
            const { engine, creates, closes } = engineOn(choice, { clock, closeTimeoutMs: 200, init: () => initDone.promise });
      const outcome = engine.acquire({ sessionId: undefined, ip: IP }).then((lease) => { lease.release(); return 'ran'; }, (error: { code?: string }) => error.code);
      assert.ok(await eventually(() => engine.sessions().length === 1, 5_000), 'the session being made is listed');
      const id = engine.sessions()[0]!.id;
      let done = false;
      void (how === 'stop' ? engine.stop() : engine.closeSession(id)).then(() => { done = true; });
      assert.ok(await eventually(() => { clock.advance(100); return done; }, 5_000), `${how} ended without init`);
      if (ends === 'resolves') initDone.resolve({ n: 1 });
      else initDone.reject(new Error('database down'));
      assert.equal(await outcome, ends === 'resolves' ? 'ERR_SESSION_CLOSED' : 'ERR_SESSION_INIT_FAILED', 'the request does not run in the closed session');
      if (how === 'closeSession') {
        let stopped = false;
        void engine.stop().then(() => { stopped = true; });
        assert.ok(await eventually(() => { clock.advance(100); return stopped; }, 5_000));
      }
      const s = engine.stats();
      assert.equal(creates.length, 0, 'never created');
      assert.equal(s.created, 0);
      assert.deepEqual(closes.map((c) => [c.reason, c.processCount, c.hooksRun]), [], 'no close event for a session never made');
      assert.equal(sumClosed(s.closed), 0, `no close counted: ${JSON.stringify(s.closed)}`);
    });
  }
}

// The Redis node has closed its own connections once its stop ended: the late release of such an init's
// request fails on them, which says nothing of Redis (it answered all along).
for (const [name, storeFor] of stores) {
  test(`${name}: an init that ends after the stop gave up on it reports no store failure (Redis never failed)`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const initDone = deferred<Vars>();
    const { engine } = engineOn(choice, { clock, closeTimeoutMs: 200, init: () => initDone.promise });
    const messages: string[] = [];
    engine.on('error', (e: SessionError) => messages.push(`${e.code}: ${e.message}`));
    const outcome = engine.acquire({ sessionId: undefined, ip: IP }).then((lease) => { lease.release(); return 'ran'; }, (error: { code?: string }) => error.code);
    assert.ok(await eventually(() => engine.sessions().length === 1, 5_000));
    let stopped = false;
    void engine.stop().then(() => { stopped = true; });
    assert.ok(await eventually(() => { clock.advance(100); return stopped; }, 5_000));
    initDone.resolve({ n: 1 });
    await outcome;
    await eventually(() => messages.some((m) => m.startsWith('ERR_SESSION_STORE_UNAVAILABLE')), 500);
    await settle();
    assert.deepEqual(messages.filter((m) => !m.startsWith('ERR_SESSION_DRAIN_TIMEOUT')), [], 'no store failure');
    assert.equal(engine.stats().storeErrors, 0);
  });
}

// A first init that outlasts its close's drain and ends (refused) while that close's hooks still run:
// never made either.
for (const [name, storeFor] of stores) {
  for (const ends of ['resolves', 'rejects'] as const) {
    test(`${name}: a slow first init that ${ends} while its close's (slow) hook runs: the session never made is neither said on 'close' nor counted`, { timeout: 20_000 }, async (t) => {
      const choice = await storeFor(t);
      if (choice === 'skip') return;
      const clock = new ManualClock();
      const initDone = deferred<Vars>();
      const hookGate = deferred<void>();
      let hookStarted = false;
      const { engine, creates, closes } = engineOn(choice, {
        clock, closeTimeoutMs: 200, init: () => initDone.promise,
        onClose: async () => { hookStarted = true; await hookGate.promise; },
      });
      const outcome = engine.acquire({ sessionId: undefined, ip: IP }).then((lease) => { lease.release(); return 'ran'; }, (error: { code?: string }) => error.code);
      assert.ok(await eventually(() => engine.sessions().length === 1, 5_000), 'the session being made is listed');
      const id = engine.sessions()[0]!.id;
      let done = false;
      void engine.closeSession(id).then(() => { done = true; });
      // The drain gives up at closeTimeoutMs; the hook starts and waits.
      assert.ok(await eventually(() => { if (!hookStarted) clock.advance(100); return hookStarted; }, 5_000), 'the hook started');
      if (ends === 'resolves') initDone.resolve({ n: 1 });
      else initDone.reject(new Error('database down'));
      const refused = await outcome;
      assert.ok(refused === 'ERR_SESSION_CLOSED' || refused === 'ERR_SESSION_INIT_FAILED', `the request was ${refused}`);
      await settle();
      hookGate.resolve();
      assert.ok(await eventually(() => done, 5_000), 'the close ended');
      let stopped = false;
      void engine.stop().then(() => { stopped = true; });
      assert.ok(await eventually(() => { clock.advance(100); return stopped; }, 5_000));
      const s = engine.stats();
      assert.equal(creates.length, 0, 'never created');
      assert.equal(s.created, 0);
      assert.deepEqual(closes.map((c) => [c.reason, c.processCount, c.hooksRun]), [], 'no close event for a session never made');
      assert.equal(sumClosed(s.closed), 0, `no close counted: ${JSON.stringify(s.closed)}`);
    });
  }
}

// A new session regenerated (from outside) while its first init runs: its 'create' names the id the
// request runs in (the id its close names).
for (const [name, storeFor] of stores) {
  test(`${name}: regenerated while its first init runs: 'create' names the id the request runs under; create/close balanced`, { timeout: 20_000 }, async (t) => {
    const choice = await storeFor(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const initDone = deferred<Vars>();
    const { engine, creates, closes } = engineOn(choice, { clock, closeTimeoutMs: 200, init: () => initDone.promise });
    const acquiring = engine.acquire({ sessionId: undefined, ip: IP });
    assert.ok(await eventually(() => engine.sessions().length === 1, 5_000));
    const id = engine.sessions()[0]!.id;
    const fresh = await engine.regenerate(id);
    t.diagnostic(`regenerate -> ${String(fresh)}`);
    initDone.resolve({ n: 1 });
    const lease = await acquiring;
    const runsUnder = lease.sessionId;
    lease.release();
    await settle();
    assert.deepEqual(creates.map((c) => c.sessionId), [runsUnder], `'create' names ${creates.map((c) => c.sessionId).join(',')}, request runs under ${runsUnder} (old ${id}, new ${String(fresh)})`);
    let stopped = false;
    void engine.stop().then(() => { stopped = true; });
    assert.ok(await eventually(() => { clock.advance(100); return stopped; }, 5_000));
    assert.deepEqual(closes.map((c) => c.sessionId), [runsUnder]);
    assert.equal(sumClosed(engine.stats().closed), engine.stats().created);
  });
}
