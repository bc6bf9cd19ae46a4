// A closeSession on a Redis node while a new session's first init runs there, Redis unreachable: the
// claim fails (ERR_SESSION_STORE_UNAVAILABLE), and init ends during the claim's round trip, so the request
// cannot learn whether the session has left Redis either (it is refused with a 503). The session was
// never made ('create' was never said): no close of it may be said or counted later either, whether the
// claim ran in Redis (its reply lost: the repair runs that close, its handle here gone with the refused
// request) or not (the repair forgets the session its create left). As on the memory store, whose close
// of a session never made is neither said nor counted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type CloseEvent, type CreateEvent, type SessionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { deferred, eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { IP, wrapScript, type Script, type Vars } from './redis-crossing.js';

for (const claim of ['never reaches Redis', 'runs, its reply lost'] as const) {
  test(`redis: a new session whose init ends while its close's claim fails (it ${claim}) and Redis does not answer: never made, no close of it is said or counted later`, { timeout: 20_000 }, async (t) => {
    const r = await redisForTest(t);
    if (r === undefined) return;
    const clock = new ManualClock();
    const initDone = deferred<Vars>();
    let initStarted = false;
    const client = await r.client();
    const engine = new SessionEngine<Vars>({
      clock, closeTimeoutMs: 10_000, inactiveSessionTimeoutMs: 60_000, inactiveProcessTimeoutMs: 60_000,
      init: () => { initStarted = true; return initDone.promise; },
      onClose: () => {},
      // A short node lease: the request's "has the session left Redis?" gives up after it.
      store: createRedisStore({ redis: client, prefix: r.prefix, pollIntervalMs: 5, sweepIntervalMs: 1_000, nodeLeaseMs: 600 }),
    });
    const creates: CreateEvent[] = [];
    const closes: CloseEvent[] = [];
    const errors: SessionError[] = [];
    engine.on('create', (e) => creates.push(e));
    engine.on('close', (e) => closes.push(e));
    engine.on('error', (e) => errors.push(e));
    try {
      const outcome = engine.acquire({ sessionId: undefined, ip: IP }).then((lease) => { lease.release(); return 'ran'; }, (error: { code?: string }) => error.code);
      assert.ok(await eventually(() => initStarted && engine.sessions().length === 1, 5_000), 'init runs');
      const id = engine.sessions()[0]!.id;
      // Redis stops answering: the claim (which may run first) and the request's question after init.
      let away = true;
      const scripts = client as unknown as Record<string, Script>;
      const left = scripts.lwsLeft!.bind(client);
      scripts.lwsLeft = async (...args) => { if (away) throw new Error('Connection is closed.'); return left(...args); };
      wrapScript(client, 'lwsClaim', (original) => async (...args) => {
        if (claim === 'runs, its reply lost') await original(...args);
        initDone.resolve({ n: 1 });
        await outcome; // refused meanwhile: Redis did not say whether the session had left
        throw new Error('Connection is closed.');
      });
      await assert.rejects(engine.closeSession(id), { code: 'ERR_SESSION_STORE_UNAVAILABLE' });
      assert.equal(await outcome, 'ERR_SESSION_STORE_UNAVAILABLE', 'the request could not run');
      away = false;
      // The sweeps repair what the lost replies left.
      assert.ok(await eventually(async () => { clock.advance(5_000); return (await r.redis.exists(`${r.prefix}s:${id}`)) === 0; }, 8_000), 'the session has left Redis');
      assert.ok(await eventually(() => engine.stats().closingSessions === 0, 5_000));
      const s = engine.stats();
      assert.deepEqual(creates, [], 'never made');
      assert.deepEqual(closes.map((c) => [c.reason, c.processCount, c.hooksRun]), [], 'no close said for a session never made');
      assert.equal(Object.values(s.closed).reduce((a, b) => a + b, 0), 0, `no close counted: ${JSON.stringify(s.closed)}`);
    } finally {
      initDone.resolve({});
      let stopped = false;
      void engine.stop().then(() => { stopped = true; });
      await eventually(() => { clock.advance(5_000); return stopped; }, 8_000);
    }
  });
}
