// A queued request whose client left keeps its place in line (queue-client-left.test.ts): when the
// session is regenerated while it waits, it goes on in the session under its new id, as any request
// that waited for it does (regenerate-queued.test.ts), rather than in a brand-new session.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type SessionError } from '../src/index.js';
import { eventually } from './helpers.js';
import { leavingClient } from './leaving-client-support.js';
import { storeChoices } from './store-choices.js';

const IP = '127.0.0.1';

for (const [name, choose] of storeChoices({ pollIntervalMs: 20 })) {
  test(`${name}: a queued request whose client left goes on in its session under the new id when the session is regenerated meanwhile`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const engine = new SessionEngine<{ n?: number }>({ ...choice.options, clock: new ManualClock(), init: () => ({ n: 0 }) });
    const errors: SessionError[] = [];
    engine.on('error', (error) => errors.push(error));
    try {
      const running = await engine.acquire({ sessionId: undefined, ip: IP });
      const oldId = running.sessionId;
      const client = leavingClient(oldId);
      const gone = engine.acquire(client.identity);
      assert.ok(await eventually(() => client.watched(), 5_000), 'it waits, its client watched');
      client.leave();
      const newId = await running.run(() => engine.regenerate(oldId));
      assert.ok(newId !== null && newId !== oldId);
      running.proc.vars.n = 7;
      running.release();
      const first = await gone;
      const got = { sessionId: first.sessionId, n: first.proc.vars.n };
      first.release();
      assert.deepEqual(got, { sessionId: newId, n: 7 }, 'in the regenerated session, not a new one');
      assert.equal(engine.sessions().length, 1, 'no session made for it');
      assert.deepEqual(errors.map((e) => e.code), []);
    } finally {
      await engine.stop();
    }
  });
}
