// A hook, task or init may return a foreign thenable rather than a promise: a query builder (knex, a mongoose
// Query) whose then() runs the query each time it is called. Such a value must be subscribed to once:
// a second then() runs the query a second time (a double insert) or fails ("Query was already executed").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SessionEngine } from '../src/index.js';
import { eventually } from './helpers.js';

const IP = '127.0.0.1';

/** A lazy thenable as query builders are: each then() runs the work again. */
function lazyQuery(runs: { count: number }): { then(onFulfilled: () => void, onRejected: (error: unknown) => void): void } {
  return {
    then(onFulfilled, onRejected) {
      runs.count++;
      void Promise.resolve().then(onFulfilled, onRejected);
    },
  };
}

test('a hook returning a lazy thenable (a query builder) runs it once', async () => {
  const runs = { count: 0 };
  const errors: unknown[] = [];
  const engine = new SessionEngine({ onClose: () => lazyQuery(runs) as unknown as Promise<void> });
  engine.on('error', (e) => errors.push(e));
  const lease = await engine.acquire({ sessionId: undefined, ip: IP });
  lease.release();
  assert.equal(await engine.closeSession(lease.sessionId), true);
  assert.equal(runs.count, 1, `the hook's query ran ${runs.count} times`);
  assert.deepEqual(errors, []);
  await engine.stop();
});

test('a task returning a lazy thenable (a query builder) runs it once; an init returning one too', async () => {
  const runs = { count: 0 };
  const engine = new SessionEngine();
  const lease = await engine.acquire({ sessionId: undefined, ip: IP });
  lease.proc.spawn('query', () => lazyQuery(runs) as unknown as Promise<void>);
  lease.release();
  assert.ok(await eventually(() => engine.sessionProcessCount(lease.sessionId) === 1, 2_000));
    assert.equal(runs.count, 1, `the task's query ran ${runs.count} times`);
  await engine.stop();
  const initRuns = { count: 0 };
  const withInit = new SessionEngine({ init: () => ({ then: (ok: (vars: object) => void) => { initRuns.count++; ok({ n: 1 }); } }) as unknown as Promise<{ n: number }> });
  const first = await withInit.acquire({ sessionId: undefined, ip: IP });
  assert.deepEqual(first.proc.vars, { n: 1 });
  first.release();
  assert.equal(initRuns.count, 1, `init's thenable was asked ${initRuns.count} times`);
  await withInit.stop();
});
