// A node that knows a session's close has ended (it ran that close itself, or its join found the key
// gone) may still read the close's announcement ('c') afterwards: its subscriber is another connection
// than the one its close's FINISH was answered on, and the 'x' that follows the 'c' may be lost in a cut.
// That late 'c' tells nothing new: an enter Redis ran just before the claim, its reply read after that,
// is still a straggler of a finished close (torn down: vars reset, no lock), never a request running in
// the closed session's context (DESIGN.md invariant 3, no resurrection). Found by
// test/property-redis-stragglers.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type RequestLease } from '../src/index.js';
import { track } from './engine-harness.js';
import { eventually } from './helpers.js';
import { redisForTest } from './redis-support.js';
import { HeldMessages, holdEnterReplies, idleInRedis, IP, node, stopAll, settledAsTimePasses, type Vars } from './redis-crossing.js';

/** Holds messages as HeldMessages does, and loses those starting with one of `lost` (as across a cut of the subscriber). */
class LateAndLost extends HeldMessages {
  readonly #lost: string[];
  #losing = false;

  constructor(held: string[], lost: string[]) {
    super(...held);
    this.#lost = lost;
  }

  override holds(message: string): boolean {
    this.#losing = this.on && this.#lost.some((start) => message.startsWith(start));
    return this.#losing || super.holds(message);
  }

  override hold(deliver: () => void): void {
    if (!this.#losing) super.hold(deliver);
  }
}

for (const how of ['its own close', 'a join of the other node\'s close'] as const) {
  test(`redis: a 'c' read after the node knew the close had ended (${how}; its 'x' lost) does not let a late enter reply run the request in the old context`, { timeout: 20_000 }, async (t) => {
    const r = await redisForTest(t);
    if (r === undefined) return;
    const clock = new ManualClock();
    const late = new LateAndLost(['c '], ['x ']);
    const x = await node(r, clock, { held: late });
    const y = await node(r, clock);
    const leases: (RequestLease<Vars> | undefined)[] = [];
    let closing: ReturnType<typeof track<boolean>> | undefined;
    try {
      const first = await x.engine.acquire({ sessionId: undefined, ip: IP });
      first.proc.vars.login = 'alice';
      first.release();
      const id = first.sessionId;
      assert.ok(await idleInRedis(r, id));
      late.on = true; // x reads 'c' late and loses 'x'
      const hold = holdEnterReplies(x.client);
      const entering = track(x.engine.acquire({ sessionId: id, ip: IP }));
      await hold.sent; // Redis ran the enter: the process is busy, the close waits for it
      if (how === 'its own close') {
        closing = track(x.engine.closeSession(id));
      } else {
        closing = track(y.engine.closeSession(id));
        assert.ok(await eventually(async () => (await r.redis.hget(`${r.prefix}s:${id}`, 'st')) === 'c', 5_000), 'y claimed the close');
        const joined = track(x.engine.closeSession(id)); // joins y's close, learns its end when the key is gone
        assert.ok(await settledAsTimePasses(clock, joined), 'x\'s join ended');
        assert.equal(joined.value, true);
      }
      assert.ok(await settledAsTimePasses(clock, closing!), 'the close gave up on the request and finished');
      assert.equal(closing!.value, true);
      assert.ok(await eventually(() => late.seen.includes(`x ${id}`), 5_000), 'the close ended (its x lost on x)');
      assert.equal(late.count, 1, 'only the c is held');
      late.deliver(); // the close's announcement reaches x after its end
      hold.deliver(); // then the enter's reply
      assert.ok(await eventually(() => entering.settled, 5_000));
      if (entering.error !== undefined) {
        assert.equal((entering.error as { code?: string }).code, 'ERR_SESSION_CLOSED');
        return;
      }
      const b = entering.value!;
      leases.push(b);
      assert.equal(b.sessionId, id);
      const lockTaken = await b.proc.locks.tryLock('Stock', 42).catch((e: { code?: string }) => e.code);
      assert.deepEqual({ closed: b.proc.closed, vars: b.proc.vars, lockTaken }, { closed: true, vars: {}, lockTaken: 'ERR_SESSION_CLOSED' },
        `the request runs in the old context of closed session ${id}`);
    } finally {
      late.deliver();
      await stopAll(clock, leases, closing, x, y);
    }
  });
}
