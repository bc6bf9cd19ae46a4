// "Log out on every device" written the natural 4D way: each session's hook awaits WEB LEGACY CLOSE
// SESSION of the user's other sessions, whose hooks do the same. A close awaited from a hook of another
// closing session is a no-op on a close under way (as 4D's command is): it resolves true without waiting,
// so no two hooks wait on each other until closeTimeoutMs. The same on both stores. Session time stands
// still in each test: only a wait-for cycle could hold a close (its bound is closeTimeoutMs on the clock).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type CloseEvent, type SessionError } from '../src/index.js';
import { track } from './engine-harness.js';
import { deferred, eventually, settle } from './helpers.js';
import { storeChoices } from './store-choices.js';
import { IP, settledAsTimePasses, type Vars } from './redis-crossing.js';

const TIMEOUT_MS = 60_000;

/** An engine whose hooks log the user out of every other device, awaiting each close. */
function everyDevice(options: object, clock: ManualClock): { engine: SessionEngine<Vars>; devices: Set<string>; hooked: string[]; closes: CloseEvent[]; errors: SessionError[] } {
  const devices = new Set<string>();
  const hooked: string[] = [];
  const engine: SessionEngine<Vars> = new SessionEngine<Vars>({
    clock, closeTimeoutMs: 10_000, inactiveProcessTimeoutMs: TIMEOUT_MS, ...options,
    onClose: async () => {
      const own = engine.currentSessionId();
      hooked.push(own);
      for (const other of [...devices]) if (other !== own) assert.equal(await engine.closeSession(other), true);
      devices.delete(own);
    },
  });
  const closes: CloseEvent[] = [];
  const errors: SessionError[] = [];
  engine.on('close', (event) => closes.push(event));
  engine.on('error', (error) => errors.push(error));
  return { engine, devices, hooked, closes, errors };
}

async function signIn(engine: SessionEngine<Vars>, devices: Set<string>): Promise<string> {
  const lease = await engine.acquire({ sessionId: undefined, ip: IP });
  devices.add(lease.sessionId);
  lease.release();
  return lease.sessionId;
}

for (const [name, choose] of storeChoices()) {
  test(`${name}: a logout whose hook awaits the close of the user's other session, whose hook awaits this one's: the logout returns at once, each hook ran once, nothing timed out`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const { engine, devices, hooked, closes, errors } = everyDevice(choice.options, clock);
    try {
      const laptop = await signIn(engine, devices);
      const phone = await signIn(engine, devices);
      const lease = await engine.acquire({ sessionId: laptop, ip: IP });
      const logout = track(lease.run(() => engine.closeSession(laptop)));
      assert.ok(await eventually(() => logout.settled, 3_000), 'the logout returned without session time passing');
      lease.release();
      assert.equal(logout.value, true);
      assert.ok(await eventually(() => closes.length === 2, 3_000), 'both closes ended');
      assert.deepEqual([...hooked].sort(), [laptop, phone].sort());
      assert.deepEqual(closes.map((c) => c.reason), ['closed', 'closed']);
      assert.deepEqual(errors.map((e) => e.code), [], 'no hook timed out');
    } finally {
      const stopping = track(engine.stop());
      await settledAsTimePasses(clock, stopping);
    }
  });

  test(`${name}: two sessions of a user time out together, each hook awaiting the other's close: both closes end at once, nothing timed out`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const { engine, devices, hooked, closes, errors } = everyDevice(choice.options, clock);
    try {
      await signIn(engine, devices);
      await signIn(engine, devices);
      if (choice.redis !== undefined) {
        const lru = `${choice.redis.prefix}lru`;
        assert.ok(await eventually(async () => (await choice.redis!.redis.zcard(lru)) === 2), 'both releases landed');
      }
      clock.advance(TIMEOUT_MS + 1_000);
      assert.ok(await eventually(() => closes.length === 2, 3_000), `both closes ended (${hooked.length} hook(s) started)`);
      assert.equal(hooked.length, 2);
      // The expiry may reach the second session after the first hook closed it already ('closed').
      assert.ok(closes.some((c) => c.reason === 'timeout'));
      assert.deepEqual(errors.map((e) => e.code), [], 'no hook timed out');
    } finally {
      const stopping = track(engine.stop());
      await settledAsTimePasses(clock, stopping);
    }
  });
}

test('memory store: only a hook gets true at once: a straggler request (its session past its drain, its hook begun) awaits closeSession(other) until that close has ended', { timeout: 10_000 }, async () => {
  const clock = new ManualClock();
  const hookMayEnd = new Map<string, ReturnType<typeof deferred>>();
  const hooked = new Set<string>();
  const engine = new SessionEngine<Vars>({
    clock, closeTimeoutMs: 1_000_000,
    onClose: async (proc) => { hooked.add(proc.sessionId); await hookMayEnd.get(proc.sessionId)?.promise; },
  });
  engine.on('error', () => {});
  try {
    const other = await engine.acquire({ sessionId: undefined, ip: IP });
    other.release();
    hookMayEnd.set(other.sessionId, deferred());
    const otherClose = track(engine.closeSession(other.sessionId));
    assert.ok(await eventually(() => hooked.has(other.sessionId)), 'the other session\'s hook runs, and holds on');

    engine.setOption('closeTimeoutMs', 1_000); // the other hook keeps its long deadline
    const straggler = await engine.acquire({ sessionId: undefined, ip: IP });
    hookMayEnd.set(straggler.sessionId, deferred());
    const ownClose = track(engine.closeSession(straggler.sessionId));
    await settle();
    clock.advance(1_000); // the drain gives up on the straggler (its hook begins)
    assert.ok(await eventually(() => hooked.has(straggler.sessionId)), 'the straggler\'s session is past its drain');
    const fromStraggler = track(straggler.run(() => engine.closeSession(other.sessionId)));
    await settle(20);
    assert.equal(fromStraggler.settled, false, `it waits for the close under way (its hook still runs): ${String(fromStraggler.error)} ${String(fromStraggler.value)}`);
    hookMayEnd.get(other.sessionId)!.resolve(undefined);
    assert.ok(await eventually(() => fromStraggler.settled && otherClose.settled), 'then resolves');
    assert.equal(fromStraggler.value, true);
    hookMayEnd.get(straggler.sessionId)!.resolve(undefined);
    straggler.release();
    assert.ok(await eventually(() => ownClose.settled));
  } finally {
    for (const d of hookMayEnd.values()) d.resolve(undefined);
    const stopping = track(engine.stop());
    await settledAsTimePasses(clock, stopping);
  }
});
