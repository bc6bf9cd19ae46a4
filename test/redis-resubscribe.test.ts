// Pub/sub messages sent while a node's subscriber was cut are lost. A request of that node that its
// session's close stopped waiting for (closeTimeoutMs) would then hear neither the close ('c') nor its end
// ('x'), and run live in the closed session to its end (its vars kept, lock calls allowed). Once the
// subscriber is back, the node checks in Redis the sessions it runs work of: the straggler is torn down
// as if 'x' had come (as the memory store tears down its stragglers).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Redis } from 'ioredis';
import { ManualClock, SessionEngine, type RequestLease, type SessionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { track } from './engine-harness.js';
import { eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { IP, node, settledAsTimePasses, stopAll, type Node, type Vars } from './redis-crossing.js';

test('redis: a straggler whose node lost both the close\'s c and x (its subscriber cut meanwhile) is torn down once the subscriber is back: signal aborted, vars reset, lock calls refused', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  // x's client reconnects (the test clients do not by default): its subscriber, a duplicate, too.
  const client = await r.client({ retryStrategy: () => 20 });
  let subscriber: Redis | undefined;
  let deaf = false; // while true, x's subscriber loses every message (as across a cut connection)
  const duplicate = client.duplicate.bind(client);
  client.duplicate = (...args: Parameters<Redis['duplicate']>) => {
    const made = duplicate(...args);
    const emit = made.emit.bind(made);
    made.emit = (event: string | symbol, ...rest: unknown[]): boolean => (event === 'message' && deaf ? true : emit(event, ...rest));
    subscriber = made;
    return made;
  };
  const errors: SessionError[] = [];
  const engine = new SessionEngine<Vars>({
    clock, closeTimeoutMs: 10_000,
    store: createRedisStore({ redis: client, prefix: r.prefix, pollIntervalMs: 5, sweepIntervalMs: 1_000 }),
  });
  engine.on('error', (e) => errors.push(e));
  const x: Node = { engine, client, errors, hooked: [] };
  const y = await node(r, clock);
  const leases: (RequestLease<Vars> | undefined)[] = [];
  let closing: ReturnType<typeof track<boolean>> | undefined;
  try {
    const a = await x.engine.acquire({ sessionId: undefined, ip: IP });
    leases.push(a);
    a.proc.vars.cart = 'full';
    const id = a.sessionId;
    deaf = true;
    closing = track(y.engine.closeSession(id));
    assert.ok(await settledAsTimePasses(clock, closing!), 'the close gave up on the request and finished');
    assert.equal(await r.redis.exists(`${r.prefix}s:${id}`), 0, 'the session left Redis');
    assert.equal(a.proc.closed, false, 'x heard nothing: the straggler still runs live');
    assert.ok(subscriber !== undefined);
    subscriber.disconnect(true); // cut, and back
    deaf = false;
    assert.ok(await eventually(() => a.proc.closed, 5_000), 'torn down once x\'s subscriber is back');
    assert.equal(a.proc.signal.aborted, true);
    assert.deepEqual(a.proc.vars, {});
    await assert.rejects(a.proc.locks.tryLock('Stock', 42), { code: 'ERR_SESSION_CLOSED' });
  } finally {
    deaf = false;
    await stopAll(clock, leases, closing, x, y);
  }
});
