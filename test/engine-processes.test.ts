// Processes beside the queue (invariant 7): processesPerSession, room freed elsewhere, maxConcurrentProcesses, evictions for room.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { type RequestLease, type SessionEngine, type SessionVars, type WebProcess } from '../src/index.js';
import { engineWithErrors, settle } from './helpers.js';
import { keepLoopAlive, leaseTracker, record, track } from './engine-harness.js';

const IP = '203.0.113.5';
const { open, shutdown } = leaseTracker(IP);
/** Every test is bounded: a hang (a deadlock in the engine) fails that test instead of stalling the run. */
const GUARD = { timeout: 5_000 };

keepLoopAlive();

interface Vars {
  n: number;
}

function liveIds<V extends SessionVars>(engine: SessionEngine<V>): string[] {
  return engine.sessions().map((s) => s.id).sort();
}

describe('requests of one process never overlap (invariant 7): processes and their limits', () => {
  test('processesPerSession: 2 lets two requests of one session run at once, each in its own process, never two in one process', GUARD, async () => {
    let inits = 0;
    const { engine } = engineWithErrors<Vars>({ processesPerSession: 2, init: () => { inits++; return { n: 0 }; } });
    try {
      const first = await open(engine);
      const id = first.sessionId;
      const second = await open(engine, id); // resolves at once: not queued behind `first`
      assert.equal(second.sessionId, id);
      assert.notEqual(second.proc, first.proc);
      assert.equal(second.isNewSession, false);
      assert.equal(inits, 2);
      assert.equal(engine.sessionProcessCount(id), 2);
      first.proc.vars.n = 1;
      assert.equal(second.proc.vars.n, 0, 'each process has its own variables');

      const busy = new Map<WebProcess<Vars>, number>();
      let overlap = 0;
      let maxTotal = 0;
      const enter = (lease: RequestLease<Vars>): RequestLease<Vars> => {
        const n = (busy.get(lease.proc) ?? 0) + 1;
        busy.set(lease.proc, n);
        if (n > 1) overlap++;
        maxTotal = Math.max(maxTotal, [...busy.values()].reduce((x, y) => x + y, 0));
        return lease;
      };
      const leave = (lease: RequestLease<Vars>): void => {
        busy.set(lease.proc, (busy.get(lease.proc) ?? 0) - 1);
        lease.release();
      };
      enter(first);
      enter(second);

      const third = track(open(engine, id).then(enter));
      await settle();
      assert.equal(third.settled, false, 'a third request waits: two processes at most');
      const runs = [0, 1, 2, 3, 4].map(() => open(engine, id).then(async (lease) => {
        enter(lease);
        await lease.run(() => settle(1));
        leave(lease);
      }));
      leave(first);
      await settle();
      assert.equal(third.value?.proc, first.proc);
      leave(second);
      leave(third.value!);
      await Promise.all(runs);
      assert.equal(overlap, 0);
      assert.equal(maxTotal, 2);
      assert.equal(inits, 2);
      assert.equal(engine.sessionProcessCount(id), 2);
    } finally {
      await shutdown(engine);
    }
  });

  test('processesPerSession raised while requests wait: the first waiting one takes the new room at once, a newcomer queues behind the rest', GUARD, async () => {
    const { engine } = engineWithErrors<Vars>({ processesPerSession: 1 });
    try {
      const first = await open(engine);
      const id = first.sessionId;
      const waiting = [track(open(engine, id)), track(open(engine, id))];
      await settle();
      engine.setOption('processesPerSession', 2);
      await settle();
      assert.ok(waiting[0]!.value !== undefined && waiting[0]!.value.proc !== first.proc, 'the first waiting request runs in a second process without waiting for a release');
      assert.equal(waiting[1]!.settled, false, 'the room is one process: the second still waits');
      assert.equal(engine.sessionProcessCount(id), 2);
      const newcomer = track(open(engine, id));
      first.release();
      await settle();
      assert.equal(waiting[1]!.value?.proc, first.proc, 'the released process goes to the one that waited, not to the newcomer');
      assert.equal(newcomer.settled, false);
      waiting[0]!.value.release();
      await settle();
      assert.ok(newcomer.value !== undefined);
      for (const lease of [waiting[1]!.value!, newcomer.value]) lease.release();
    } finally {
      await shutdown(engine);
    }
  });

  test('a process place freed elsewhere goes to the request waiting for one, not to a newcomer', GUARD, async () => {
    const { engine } = engineWithErrors<Vars>({ processesPerSession: 2, maxConcurrentProcesses: 2, maxSessions: 2 });
    try {
      const mine = await open(engine);
      const other = await open(engine);
      const waiting = track(open(engine, mine.sessionId)); // no room for a second process: it waits
      await settle();
      assert.equal(waiting.settled, false);
      other.release();
      assert.equal(await engine.closeSession(other.sessionId), true); // a place is free now
      await settle();
      assert.ok(waiting.value !== undefined && waiting.value.proc !== mine.proc, 'the waiting request runs in a second process as soon as the place is free');
      const newcomer = track(open(engine, mine.sessionId));
      await settle();
      assert.equal(newcomer.settled, false, 'two processes, both busy: the newcomer waits');
      mine.release();
      await settle();
      assert.equal(newcomer.value?.proc, mine.proc);
      newcomer.value.release();
      waiting.value.release();
    } finally {
      await shutdown(engine);
    }
  });

  test('first come, first served: with a request waiting for room, a newcomer of the same session queues behind it', GUARD, async () => {
    const { engine } = engineWithErrors<Vars>({ processesPerSession: 3, maxConcurrentProcesses: 2, maxSessions: 2 });
    try {
      const mine = await open(engine);
      const other = await open(engine);
      const first = track(open(engine, mine.sessionId));
      const second = track(open(engine, mine.sessionId));
      await settle();
      assert.equal(first.settled || second.settled, false, 'no room: both wait');
      other.release();
      assert.equal(await engine.closeSession(other.sessionId), true); // one place
      await settle();
      assert.ok(first.value !== undefined, 'the first to wait takes the one free place');
      assert.equal(second.settled, false, 'the second waits on');
      mine.release();
      await settle();
      assert.equal(second.value?.proc, mine.proc);
      for (const lease of [first.value, second.value!]) lease.release();
    } finally {
      await shutdown(engine);
    }
  });

  test('maxConcurrentProcesses caps processes across sessions: ERR_SESSION_PROCESS_LIMIT (503), extra requests of a session queue', GUARD, async () => {
    const { engine } = engineWithErrors<Vars>({ maxConcurrentProcesses: 3, processesPerSession: 2, maxSessions: 10 });
    try {
      const a1 = await open(engine);
      const a2 = await open(engine, a1.sessionId);
      const b = await open(engine);
      assert.equal(engine.stats().processes, 3);
      assert.equal(engine.getOption('maxSessions'), 3);

      await assert.rejects(open(engine), { name: 'SessionError', code: 'ERR_SESSION_PROCESS_LIMIT', httpStatus: 503 });
      assert.equal(engine.stats().rejected.processLimit, 1);
      assert.equal(engine.stats().sessions, 2);
      assert.throws(() => b.proc.spawn('job', async () => {}), { code: 'ERR_SESSION_PROCESS_LIMIT' });
      assert.equal(engine.stats().rejected.processLimit, 2);

      // b may have two processes, but none is left: its second request waits for its first.
      const bAgain = track(open(engine, b.sessionId));
      await settle();
      assert.equal(bAgain.settled, false);
      b.release();
      await settle();
      assert.equal(bAgain.value?.proc, b.proc);
      assert.equal(engine.sessionProcessCount(b.sessionId), 1);
      bAgain.value?.release();

      // b is idle now: a newcomer evicts it to get a process.
      const c = await open(engine);
      assert.deepEqual(liveIds(engine), [a1.sessionId, c.sessionId].sort());
      assert.equal(engine.stats().processes, 3);
      a1.release();
      a2.release();
      c.release();
    } finally {
      await shutdown(engine);
    }
  });

  test('evictions for one newcomer whose first hook closes another idle session ("log out everywhere"): the newcomer gets in, nothing is closed twice', GUARD, async () => {
    const ids: string[] = [];
    let engine!: SessionEngine<Vars>;
    ({ engine } = engineWithErrors<Vars>({
      maxSessions: 3,
      onClose: (proc) => { if (proc.sessionId === ids[0]) void engine.closeSession(ids[1]!); },
    }));
    const { closes } = record(engine);
    try {
      for (let i = 0; i < 3; i++) {
        const lease = await open(engine);
        ids.push(lease.sessionId);
        lease.release();
      }
      engine.setOption('maxSessions', 1);
      // Three idle sessions, cap 1: three must go; the first one's hook closes the second itself.
      const newcomer = await open(engine);
      await settle();
      assert.deepEqual(closes.map((e) => e.sessionId).sort(), [...ids].sort());
      assert.deepEqual(Object.fromEntries(closes.map((e) => [e.sessionId, e.reason])), { [ids[0]!]: 'evicted', [ids[1]!]: 'closed', [ids[2]!]: 'evicted' });
      assert.deepEqual(liveIds(engine), [newcomer.sessionId]);
      newcomer.release();
    } finally {
      await shutdown(engine);
    }
  });

  test('a newcomer that eviction cannot make room for (limits lowered below the busy processes) gets 503 and evicts nothing', GUARD, async () => {
    const { engine } = engineWithErrors<Vars>({ maxConcurrentProcesses: 4, processesPerSession: 2, maxSessions: 10 });
    const { closes } = record(engine);
    try {
      const a1 = await open(engine);
      const a2 = await open(engine, a1.sessionId);
      const b = await open(engine);
      const c = await open(engine);
      b.release();
      c.release();
      engine.setOption('maxConcurrentProcesses', 2);
      const before = liveIds(engine);
      // Closing b and c would free 2 of the 3 processes needed (a holds 2, busy): no room either way.
      await assert.rejects(open(engine), { name: 'SessionError', code: 'ERR_SESSION_PROCESS_LIMIT', httpStatus: 503 });
      await settle();
      assert.equal(closes.length, 0);
      assert.deepEqual(liveIds(engine), before);
      assert.equal(engine.stats().closed.evicted, 0);

      // Once a's second process is free, evicting b and c makes room: both go, oldest first.
      a2.release();
      engine.setOption('maxConcurrentProcesses', 3);
      const d = await open(engine);
      await settle();
      assert.deepEqual(closes.map((e) => [e.sessionId, e.reason]), [[b.sessionId, 'evicted'], [c.sessionId, 'evicted']]);
      assert.deepEqual(liveIds(engine), [a1.sessionId, d.sessionId].sort());
      a1.release();
      d.release();
    } finally {
      await shutdown(engine);
    }
  });
});
