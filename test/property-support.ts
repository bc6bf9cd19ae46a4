// The model-based property test, run against every store: random interleavings of requests, slow
// requests, spawns, locks, closes from outside and inside, clock jumps, option changes and stop(),
// checked against test/model.ts after every step (invariants 1–7 of DESIGN.md §1). A store comes with
// an Observer: how to wait until the consequences of a step have happened and where to read the truth
// (the memory store: a few event-loop turns and the engine's own views; Redis: polling Redis itself).
import assert from 'node:assert/strict';
import type { CloseEvent, RequestLease, SessionError, WebProcess } from '../src/index.js';
import { Model, type Vars } from './model.js';
import { IPS, LOCK_TABLE, MAX_QUEUED, TIMEOUT_MS, type EngineFactory, type Op, type Pending, type PendingClose, type ScenarioSettings, type Task, type World } from './property-scenario.js';


/**
 * What requests write: a number, changed in place in a byte array (the Redis store compares a state's
 * bytes with those it started from, and a Uint8Array comes back as a view into the bytes it was read
 * from; a Float64Array would not, its data being unaligned there).
 */
function writeInPlace(vars: Vars, value: number): void {
  const bytes = (vars.wa ??= new Uint8Array(4));
  new DataView(bytes.buffer, bytes.byteOffset, 4).setUint32(0, value, true);
}

function writtenIn(vars: Vars): number | undefined {
  return vars.wa === undefined ? undefined : new DataView(vars.wa.buffer, vars.wa.byteOffset, 4).getUint32(0, true);
}

export async function runScenario(ops: readonly Op[], factory: EngineFactory, settings: ScenarioSettings = {}): Promise<void> {
  const model = new Model();
  const hooks = new Map<string, number>();
  /** The process object each hook saw, by processId: after the close it must be torn down. */
  const hookProcs = new Map<string, WebProcess<Vars>>();
  const closeEvents: CloseEvent[] = [];
  const closed = new Set<string>();
  const violations: string[] = [];
  let activity = 0;
  let write = 0;
  let releases = 0;
  const violation = (message: string): void => void violations.push(message);
  const { engine, clock, observer, dispose } = await factory({
    maxSessions: 3, maxConcurrentProcesses: 50, maxQueuedRequests: MAX_QUEUED,
    inactiveProcessTimeoutMs: TIMEOUT_MS, inactiveSessionTimeoutMs: 1_000 * TIMEOUT_MS, closeTimeoutMs: 1e9,
    // The model has no queue timeout (test/queue-timeout.test.ts covers it): waits are bounded by the run.
    queueTimeoutMs: 1e9,
    onClose: (proc) => {
      activity++;
      const count = (hooks.get(proc.processId) ?? 0) + 1;
      hooks.set(proc.processId, count);
      hookProcs.set(proc.processId, proc);
      if (count !== 1) violation(`invariant 1: onClose runs once per process (${proc.processId} of ${proc.sessionId}: ${count} times)`);
      const last = model.lastWritten.get(proc.processId);
      if (writtenIn(proc.vars) !== last) violation(`invariant 2: onClose sees the context as the last request left it (${proc.processId} of ${proc.sessionId}: w=${writtenIn(proc.vars)}, last written ${last})`);
    },
  });
  const errors: unknown[] = [];
  engine.on('error', (e) => {
    activity++;
    errors.push(e);
  });
  engine.on('close', (event) => {
    activity++;
    closeEvents.push(event);
    closed.add(event.sessionId);
    for (const pid of model.processesOf(event.sessionId)) {
      if (model.endedAlone.has(pid)) continue;
      const proc = hookProcs.get(pid);
      if (proc === undefined) {
        violation(`invariant 1: process ${pid} of ${event.sessionId} closed without its hook`);
        continue;
      }
      if (!(proc.closed && proc.locks.held().length === 0 && proc.selections.tables().length === 0)) violation(`invariant 3: ${pid} of ${event.sessionId} is not torn down after its close`);
      if (Object.keys(proc.vars).length !== 0) violation(`invariant 3: the vars of ${pid} of ${event.sessionId} are not reset after its close`);
    }
    model.vanished(event.sessionId);
  });
  const pendings: Pending[] = [];
  const refusedAtCap: Pending[] = [];
  // Per step: requests refused at the cap, sessions created (a step with refusals and no creation evicts nothing).
  let refusedInStep = 0;
  let createdInStep = 0;
  engine.on('create', () => { createdInStep++; });
  const tasks: Task[] = [];
  const closes: PendingClose[] = [];
  const closeSession = (id: string, from: string, inside?: RequestLease<Vars>): Promise<boolean> => {
    const call: PendingClose = { sessionId: id, settled: false };
    closes.push(call);
    const closing = inside === undefined ? engine.closeSession(id) : inside.run(() => engine.closeSession(id));
    const settled = (): void => {
      call.settled = true;
      closes.splice(closes.indexOf(call), 1);
      activity++;
    };
    closing.then(settled, (error: unknown) => { settled(); violation(`closeSession(${id}) from ${from} rejected: ${String(error)}`); });
    return closing;
  };
  let capEver = 3;
  let stopped = false;
  const ids = (): string[] => [...model.sessions.keys(), ...model.dead];
  const noViolations = (): void => assert.deepEqual(violations, [], 'no invariant broken inside a hook or a close event');

  const acquire = (sessionId: string | undefined, ip: string, hold: boolean): void => {
    const target = sessionId !== undefined && model.sessions.has(sessionId) ? sessionId : '';
    let expect: Pending['expect'];
    let queued = false;
    if (target !== '') {
      const s = model.session(target);
      if (s.ip !== ip) expect = 'ERR_SESSION_IP_MISMATCH';
      else if (model.startsAtOnce(s, engine.getOption('processesPerSession'))) { /* a process now */ }
      else if (s.queued >= MAX_QUEUED) expect = 'ERR_SESSION_QUEUE_FULL';
      else { s.queued++; queued = true; }
    }
    const idleNow = model.idleOrder().map((i) => i.id);
    const pending: Pending = {
      target, ip, hold, queued, idleAtArrival: idleNow, busyAtArrival: model.sessions.size - idleNow.length, capAtArrival: engine.getOption('maxSessions'),
      settled: false, ...(expect === undefined ? {} : { expect }),
    };
    pendings.push(pending);
    engine.acquire({ sessionId, ip }).then(
      (lease) => {
        pending.lease = lease; pending.settled = true; activity++;
        const last = model.lastWritten.get(lease.proc.processId);
        if (writtenIn(lease.proc.vars) !== last) violation(`a request starts from the context the last request of its process left (${lease.proc.processId} of ${lease.sessionId}: w=${writtenIn(lease.proc.vars)}, last written ${last})`);
      },
      (error: unknown) => { pending.error = error; pending.settled = true; activity++; },
    );
  };

  const release = (lease: RequestLease<Vars>): void => {
    // A request that goes on after its session's teardown (a logout waiting for a task) writes into the
    // reset context: nothing a hook must see, nothing kept.
    // Every third request only reads (the Redis store then sends no state back).
    if (!lease.proc.closed && ++releases % 3 !== 0) {
      writeInPlace(lease.proc.vars, ++write);
      model.lastWritten.set(lease.proc.processId, write);
    }
    model.released(lease, clock.now());
    lease.release();
  };

  /** `id` is about to close: the requests queued in it will be bound anew, against the sessions idle now. */
  const rebindAt = (id: string): void => {
    const idleNow = model.idleOrder().map((i) => i.id).filter((other) => other !== id);
    for (const p of pendings) {
      if (p.settled || p.target !== id) continue;
      p.idleAtArrival = idleNow;
      p.busyAtArrival = model.sessions.size - 1 - idleNow.length;
      p.capAtArrival = engine.getOption('maxSessions');
    }
  };

  const absorb = (): void => {
    for (const p of [...pendings]) {
      if (!p.settled) continue;
      pendings.splice(pendings.indexOf(p), 1);
      if (p.expect !== undefined) {
        assert.equal((p.error as SessionError | undefined)?.code, p.expect, `the model predicted ${p.expect}`);
        continue;
      }
      const target = model.sessions.get(p.target);
      if (p.queued && target !== undefined && p.lease?.sessionId === p.target && target.queued > 0) target.queued--;
      if (p.lease === undefined) {
        const code = (p.error as SessionError).code;
        assert.ok(code === 'ERR_SESSION_LIMIT' || code === 'ERR_SESSION_STOPPED', `unexpected refusal ${code}`);
        // Checked once the model knows which sessions closed (forgetClosed): a 503 only when the busy
        // sessions fill the cap, and then nothing idle is evicted for it (evicting would not make room).
        if (code === 'ERR_SESSION_LIMIT') refusedAtCap.push(p);
        continue;
      }
      // Invariant 3 (and no fixation): a request with no live id gets a session of its own.
      if (p.target === '') assert.ok(!model.sessions.has(p.lease.sessionId), `a request with no live id got ${p.lease.sessionId}, a session already known`);
      if (p.target !== '' && p.lease.sessionId !== p.target) {
        // Rebound from a closed session: the others queued with it now wait in the same new session.
        for (const other of pendings) if (other.target === p.target && !other.settled) other.target = p.lease.sessionId;
        const moved = pendings.filter((o) => o.target === p.lease!.sessionId && !o.settled).length;
        model.leased(p.lease, p.ip, clock.now());
        model.session(p.lease.sessionId).queued += moved;
      } else {
        model.leased(p.lease, p.ip, clock.now());
      }
      if (!p.hold) release(p.lease);
    }
  };

  const world: World = {
    model, pendings, tasks, closes, closed,
    get activity() { return activity; },
    absorb,
    forgetClosed: (open) => {
      for (const id of [...model.sessions.keys()]) if (!open.has(id)) model.vanished(id);
      for (const p of refusedAtCap.splice(0)) {
        assert.ok(p.busyAtArrival >= p.capAtArrival, `invariant 5: 503 only when the busy sessions fill the cap (${p.busyAtArrival} busy, cap ${p.capAtArrival}, idle ${p.idleAtArrival.join()})`);
        refusedInStep++;
      }
    },
  };

  try {
    for (const op of ops) {
      const before = await observer.openIds();
      const idleSessionsBefore = model.idleOrder();
      const idleBefore = idleSessionsBefore.map((s) => s.id);
      const closedBefore = closeEvents.length;
      const explicit = new Set<string>();
      refusedInStep = 0;
      createdInStep = 0;
      const lease = model.openLeases[('k' in op ? op.k : 0) % Math.max(1, model.openLeases.length)];
      switch (op.t) {
        case 'new': acquire(undefined, IPS[op.ip], op.hold); break;
        case 'return': {
          const all = ids();
          const id = all[op.s % Math.max(1, all.length)];
          const queuedIn = id === undefined ? undefined : model.sessions.get(id);
          if (settings.avoid?.mismatchWhileQueued !== undefined && queuedIn !== undefined && queuedIn.queued > 0 && queuedIn.ip !== IPS[op.ip]) break;
          acquire(id, IPS[op.ip], op.hold);
          break;
        }
        case 'release': if (lease) release(lease); break;
        case 'lock': if (lease && !lease.proc.closed) await lease.proc.locks.tryLock(LOCK_TABLE, op.rec); break;
        case 'unlock': if (lease) await lease.proc.locks.unlock(LOCK_TABLE, op.rec); break;
        case 'spawn': if (lease && !lease.proc.closed && model.sessions.has(lease.sessionId)) {
          let end!: () => void;
          const gate = new Promise<void>((resolve) => { end = resolve; });
          const proc = lease.proc.spawn('task', () => gate);
          const s = model.session(lease.sessionId);
          s.tasks++;
          s.processes.add(proc.processId);
          tasks.push({ proc, sessionId: lease.sessionId, end, ended: false });
        } break;
        case 'endTask': { const task = tasks.find((t) => !t.ended); if (task) {
          task.ended = true;
          const s = model.sessions.get(task.sessionId);
          if (s !== undefined) { s.tasks--; model.activity(s, clock.now()); model.endedAlone.add(task.proc.processId); }
          task.end();
        } break; }
        case 'closeOut': {
          const all = ids();
          const id = all[op.s % Math.max(1, all.length)];
          if (settings.avoid?.closeWithWaiters !== undefined && id !== undefined && (model.sessions.get(id)?.queued ?? 0) >= 2) break;
          if (id !== undefined) {
            explicit.add(id);
            rebindAt(id);
            void closeSession(id, 'outside').catch(() => {});
          }
          break;
        }
        case 'closeIn': if (lease && model.sessions.has(lease.sessionId)) {
          if (settings.avoid?.closeWithWaiters !== undefined && model.session(lease.sessionId).queued >= 2) break;
          explicit.add(lease.sessionId);
          rebindAt(lease.sessionId);
          writeInPlace(lease.proc.vars, ++write);
          model.lastWritten.set(lease.proc.processId, write);
          const inSession = model.session(lease.sessionId);
          const busyElsewhere = inSession.tasks > 0 || inSession.holders > 1;
          let done = false;
          closeSession(lease.sessionId, 'inside', lease).then(() => { done = true; }, () => {});
          // With a spawned task or another request of the session still running (processesPerSession
          // 2), the close waits for it (bounded by closeTimeoutMs) first.
          const finished = await observer.until(() => done || busyElsewhere);
          if (!busyElsewhere) assert.ok(finished && done && Object.keys(lease.proc.vars).length === 0, 'logout: the handler goes on with a reset context');
        } break;
        case 'advance': clock.advance(op.ms); break;
        case 'cap': engine.setOption('maxSessions', op.n); capEver = Math.max(capEver, op.n); break;
        case 'timeout': engine.setOption('inactiveProcessTimeoutMs', op.ms); clock.advance(observer.timeoutLatenessMs); break;
        // Raised while requests wait, the room goes to them (in memory at once; on Redis at their next poll).
        case 'perSession': engine.setOption('processesPerSession', op.n); break;
        case 'regenerate': if (lease && !lease.proc.closed && model.sessions.has(lease.sessionId)) {
          const oldId = lease.sessionId;
          const newId = await lease.run(() => engine.regenerate(oldId));
          if (newId !== null) {
            // The old id leaves the open sessions without a close; the requests waiting for it follow.
            explicit.add(oldId);
            model.renamed(oldId, newId);
            // Answered or not: an answer not absorbed yet (a waiter given its process while this step ran)
            // is counted against the session under its new id.
            for (const p of pendings) if (p.target === oldId) p.target = newId;
            for (const task of tasks) if (task.sessionId === oldId) task.sessionId = newId;
          }
        } break;
      }
      await observer.settle(world);
      noViolations();

      // Invariants 4 and 5: a session that vanished without an explicit close was idle, evicted in LRU
      // order or due for timeout; a busy one never vanishes on its own.
      const after = await observer.openIds();
      const vanished = [...before].filter((id) => !after.has(id) && !explicit.has(id));
      for (const id of vanished) assert.ok(idleBefore.includes(id), `invariant 4: ${id} was busy when it closed`);
      if (op.t === 'advance' || op.t === 'timeout') {
        const timeoutMs = engine.getOption('inactiveProcessTimeoutMs');
        const due = idleSessionsBefore.filter((s) => s.lastActivityAtMs + timeoutMs <= clock.now()).map((s) => s.id);
        assert.deepEqual(new Set(vanished), new Set(due.filter((id) => !explicit.has(id))), `timeouts: exactly the idle sessions past their deadline (vanished ${vanished.join()}, due ${due.join()}, idle before ${idleBefore.join()})`);
      } else {
        assert.deepEqual(new Set(vanished), new Set(idleBefore.filter((id) => !explicit.has(id)).slice(0, vanished.length)), `invariant 5: evictions take the least recently active idle sessions (vanished ${vanished.join()}, idle before ${idleBefore.join()})`);
        // Eviction makes room or does not happen: a refused newcomer leaves every idle session open.
        if (refusedInStep > 0 && createdInStep === 0) assert.deepEqual(vanished, [], `invariant 5: a 503 evicts nothing (vanished ${vanished.join()})`);
      }
      const { sessions, longestQueue } = await observer.bounds();
      assert.ok(sessions <= Math.max(capEver, before.size), 'invariant 6: sessions bounded by the cap');
      assert.ok(longestQueue <= MAX_QUEUED, 'invariant 6: queues bounded');
      await observer.checkClosed(world, closeEvents.slice(closedBefore).map((e) => e.sessionId));
    }

    // The end: stop, let everything finish, then every process of every closed session was hooked once.
    void engine.stop().then(() => { stopped = true; });
    await observer.finish(() => {
      for (const lease of [...model.openLeases]) release(lease);
      for (const task of tasks) if (!task.ended) { task.ended = true; task.end(); }
    }, absorb, () => stopped);
    assert.ok(stopped, `stop() completes once every request and task has ended (stats ${JSON.stringify(engine.stats())}, pending ${pendings.length})`);
    assert.equal(pendings.filter((p) => !p.settled).length, 0, 'every request was answered');
    noViolations();
    const hookedTotal = [...hooks.values()].reduce((a, b) => a + b, 0);
    assert.equal(hookedTotal, closeEvents.reduce((a, e) => a + e.processCount, 0), 'invariant 1: one hook per process of each close');
    assert.ok([...hooks.values()].every((n) => n === 1), 'invariant 1: exactly once');
    await observer.checkEmpty(world);
    assert.deepEqual(errors, [], 'no hook, drain or handler error');
  } finally {
    if (!stopped) {
      // A failed run: give everything back so the engine can stop and the next run starts clean.
      for (const lease of [...model.openLeases]) lease.release();
      for (const task of tasks) task.end();
    }
    await dispose(stopped);
  }
}

/** Runs count and seed of a property: `<prefix>_RUNS` / `<prefix>_SEED` override the profile (`local`, or `ci` under CI=true). */
export function propertyProfile(prefix: string, local: number, ci: number): { runs: number; seed: number | undefined } {
  const runs = Number(process.env[`${prefix}_RUNS`] ?? (process.env.CI === 'true' ? ci : local));
  const seed = process.env[`${prefix}_SEED`] === undefined ? undefined : Number(process.env[`${prefix}_SEED`]);
  return { runs, seed };
}
