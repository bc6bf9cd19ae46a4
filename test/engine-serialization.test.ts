// One request at a time per process (invariant 7): the FIFO queue and its bound, processesPerSession, maxConcurrentProcesses.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type RequestLease, type SessionEngine, type SessionVars, type WebProcess } from '../src/index.js';
import { deferred, engineWithErrors, settle } from './helpers.js';
import { keepLoopAlive, leaseTracker, record, track } from './engine-harness.js';

const IP = '203.0.113.5';
const { open, shutdown } = leaseTracker(IP);
const MINUTE = 60_000;
/** Every test is bounded: a hang (a deadlock in the engine) fails that test instead of stalling the run. */
const GUARD = { timeout: 5_000 };

keepLoopAlive();

interface Vars {
  n: number;
}

function liveIds<V extends SessionVars>(engine: SessionEngine<V>): string[] {
  return engine.sessions().map((s) => s.id).sort();
}

describe('requests of one process never overlap (invariant 7)', () => {
  test('queued requests of one session run one at a time, in arrival order, all in the same process', GUARD, async () => {
    const { engine } = engineWithErrors<Vars>();
    try {
      const first = await open(engine);
      const id = first.sessionId;
      let inFlight = 1;
      let maxInFlight = 1;
      const order: number[] = [];
      const runs = [0, 1, 2, 3, 4].map((i) => open(engine, id).then(async (lease) => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        order.push(i);
        assert.equal(lease.proc, first.proc);
        await lease.run(() => settle(1));
        inFlight--;
        lease.release();
      }));
      await settle();
      assert.equal(engine.stats().queuedRequests, 5);
      assert.deepEqual(order, []);
      inFlight--;
      first.release();
      await Promise.all(runs);
      assert.deepEqual(order, [0, 1, 2, 3, 4]);
      assert.equal(maxInFlight, 1);
      assert.equal(engine.stats().queuedRequests, 0);
    } finally {
      await shutdown(engine);
    }
  });

  test('the request after maxQueuedRequests waiters is refused with ERR_SESSION_QUEUE_FULL (503)', GUARD, async () => {
    const { engine } = engineWithErrors<Vars>({ maxQueuedRequests: 2 });
    try {
      const first = await open(engine);
      const id = first.sessionId;
      const waiting = [open(engine, id), open(engine, id)];
      await assert.rejects(open(engine, id), { name: 'SessionError', code: 'ERR_SESSION_QUEUE_FULL', httpStatus: 503, sessionId: id });
      assert.equal(engine.stats().queuedRequests, 2);
      assert.equal(engine.sessions()[0]?.queuedRequests, 2);
      assert.equal(engine.stats().rejected.queueFull, 1);

      first.release();
      const second = await waiting[0]!;
      // One place freed in the queue: a new waiter is accepted again.
      const fourth = open(engine, id);
      second.release();
      (await waiting[1]!).release();
      (await fourth).release();
      assert.equal(engine.stats().rejected.queueFull, 1);
    } finally {
      await shutdown(engine);
    }
  });

  test("a request refused because the queue is full does not extend the session's cookie", GUARD, async () => {
    const clock = new ManualClock();
    const t0 = clock.now();
    const { engine } = engineWithErrors<Vars>({ clock, maxQueuedRequests: 0, inactiveSessionTimeoutMs: MINUTE, inactiveProcessTimeoutMs: 60 * MINUTE });
    try {
      const first = await open(engine);
      clock.advance(30_000);
      await assert.rejects(open(engine, first.sessionId), { code: 'ERR_SESSION_QUEUE_FULL' });
      assert.deepEqual(engine.sessionExpiration(first.sessionId), new Date(t0 + MINUTE), 'only an accepted request restarts the cookie');
      first.release();
    } finally {
      await shutdown(engine, clock);
    }
  });

  test('a request never gets a spawned task\'s process: with a task running, requests take request processes only (a new one when the first is busy), and queue when those are busy', GUARD, async () => {
    const { engine } = engineWithErrors<Vars>({ processesPerSession: 2, init: () => ({ n: 0 }) });
    const taskDone = deferred();
    try {
      const first = await open(engine);
      const id = first.sessionId;
      const task = first.proc.spawn('job', async () => { await taskDone.promise; });
      first.release();
      // The task runs; its process sits in the session's list after the first request process.
      const again = await open(engine, id);
      assert.equal(again.proc, first.proc, 'the free request process, not the task');
      const second = await open(engine, id); // a second request process, made after the task's
      assert.notEqual(second.proc, task);
      assert.notEqual(second.proc, first.proc);
      assert.equal(second.proc.name, 'web');
      assert.equal(engine.sessionProcessCount(id), 3);
      let thirdRan = false;
      const third = open(engine, id).then((lease) => { thirdRan = true; return lease; });
      await settle();
      assert.equal(thirdRan, false, 'both request processes busy: the third waits, it does not take the task');
      second.release();
      const thirdLease = await third;
      assert.equal(thirdLease.proc, second.proc);
      thirdLease.release();
      again.release();
      taskDone.resolve();
      await settle();
      assert.equal(engine.sessionProcessCount(id), 2, 'the task ended on its own; the two request processes stay');
      const later = [await open(engine, id), await open(engine, id)];
      assert.deepEqual(new Set(later.map((l) => l.proc)), new Set([first.proc, second.proc]));
      for (const lease of later) lease.release();
    } finally {
      await shutdown(engine);
    }
  });

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
