// Model-based property test: random interleavings of requests, slow requests, spawns, locks, closes
// from outside and inside, clock jumps, option changes and stop(), checked against test/model.ts after
// every step (invariants 1–7 of DESIGN.md §1). PROPERTY_RUNS / PROPERTY_SEED override the profile;
// a failure prints the seed and the shrunk sequence of operations, so it replays exactly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ManualClock, SessionEngine, SessionError, type CloseReason, type RequestLease, type WebProcess } from '../src/index.js';
import { settle } from './helpers.js';
import { Model, type Vars } from './model.js';

const IPS = ['127.0.0.1', '127.0.0.2'] as const;
const TIMEOUT_MS = 10_000;
const MAX_QUEUED = 2;
const RECORDS = 3;

type Op =
  | { t: 'new'; ip: 0 | 1; hold: boolean }
  | { t: 'return'; s: number; ip: 0 | 1; hold: boolean }
  | { t: 'release'; k: number }
  | { t: 'lock' | 'unlock'; k: number; rec: number }
  | { t: 'spawn'; k: number }
  | { t: 'endTask'; k: number }
  | { t: 'closeOut'; s: number }
  | { t: 'closeIn'; k: number }
  | { t: 'advance'; ms: number }
  | { t: 'cap'; n: number }
  | { t: 'timeout'; ms: number };

const index = fc.nat({ max: 7 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ t: fc.constant('new' as const), ip: fc.constantFrom(0 as const, 1 as const), hold: fc.boolean() }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('return' as const), s: index, ip: fc.constantFrom(0 as const, 0 as const, 1 as const), hold: fc.boolean() }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('release' as const), k: index }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constantFrom('lock' as const, 'unlock' as const), k: index, rec: fc.nat({ max: RECORDS - 1 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('spawn' as const), k: index }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('endTask' as const), k: index }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('closeOut' as const), s: index }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('closeIn' as const), k: index }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('advance' as const), ms: fc.constantFrom(1_000, TIMEOUT_MS / 2, TIMEOUT_MS, 3 * TIMEOUT_MS) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('cap' as const), n: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('timeout' as const), ms: fc.constantFrom(TIMEOUT_MS / 2, TIMEOUT_MS, 2 * TIMEOUT_MS) }) },
);

interface Pending {
  target: string;
  /** The refusal the model predicts, if any. */
  readonly expect?: 'ERR_SESSION_IP_MISMATCH' | 'ERR_SESSION_QUEUE_FULL';
  readonly ip: string;
  readonly hold: boolean;
  settled: boolean;
  lease?: RequestLease<Vars>;
  error?: unknown;
}

interface Task {
  readonly proc: WebProcess<Vars>;
  readonly sessionId: string;
  readonly end: () => void;
  ended: boolean;
}

export async function runScenario(ops: Op[]): Promise<void> {
  const clock = new ManualClock();
  const model = new Model();
  const hooks = new Map<WebProcess<Vars>, number>();
  const closeEvents: { sessionId: string; reason: CloseReason; processCount: number }[] = [];
  let write = 0;
  const engine = new SessionEngine<Vars>({
    clock, maxSessions: 3, maxConcurrentProcesses: 50, maxQueuedRequests: MAX_QUEUED,
    inactiveProcessTimeoutMs: TIMEOUT_MS, inactiveSessionTimeoutMs: 1_000 * TIMEOUT_MS, closeTimeoutMs: 1e9,
    onClose: (proc) => {
      hooks.set(proc, (hooks.get(proc) ?? 0) + 1);
      assert.equal(hooks.get(proc), 1, 'invariant 1: onClose runs once per process');
      assert.equal(proc.vars.w, model.lastWritten.get(proc), 'invariant 2: onClose sees the context as the last request left it');
    },
  });
  const errors: unknown[] = [];
  engine.on('error', (e) => errors.push(e));
  engine.on('close', (event) => {
    closeEvents.push(event);
    for (const proc of model.processesOf(event.sessionId)) {
      if (model.endedAlone.has(proc)) continue;
      assert.ok(proc.closed && proc.locks.held().length === 0 && proc.selections.tables().length === 0, 'invariant 3: torn down');
      assert.deepEqual(proc.vars, {}, 'invariant 3: vars reset');
    }
    model.vanished(event.sessionId);
  });
  const pendings: Pending[] = [];
  const tasks: Task[] = [];
  let capEver = 3;
  const ids = (): string[] => [...model.sessions.keys(), ...model.dead];

  const acquire = (sessionId: string | undefined, ip: string, hold: boolean): void => {
    const target = sessionId !== undefined && model.sessions.has(sessionId) ? sessionId : '';
    let expect: Pending['expect'];
    if (target !== '') {
      const s = model.session(target);
      if (s.ip !== ip) expect = 'ERR_SESSION_IP_MISMATCH';
      else if (s.holders > 0 && s.queued >= MAX_QUEUED) expect = 'ERR_SESSION_QUEUE_FULL';
      else if (s.holders > 0 || s.queued > 0) s.queued++;
    }
    const pending: Pending = { target, ip, hold, settled: false, ...(expect === undefined ? {} : { expect }) };
    pendings.push(pending);
    engine.acquire({ sessionId, ip }).then((lease) => { pending.lease = lease; pending.settled = true; }, (error: unknown) => { pending.error = error; pending.settled = true; });
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
      const waited = target !== undefined && target.holders + target.queued > 0 && p.lease?.sessionId === p.target;
      if (waited && target.queued > 0) target.queued--;
      if (p.lease === undefined) {
        const code = (p.error as SessionError).code;
        assert.ok(code === 'ERR_SESSION_LIMIT' || code === 'ERR_SESSION_STOPPED', `unexpected refusal ${code}`);
        if (code === 'ERR_SESSION_LIMIT') assert.equal(model.idleOrder().length, 0, 'invariant 5: 503 only when no session is idle');
        continue;
      }
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

  const release = (lease: RequestLease<Vars>): void => {
    lease.proc.vars.w = ++write;
    model.lastWritten.set(lease.proc, write);
    model.released(lease, clock.now());
    lease.release();
  };

  for (const op of ops) {
    const before = new Set(engine.sessions().map((s) => s.id));
    const idleSessionsBefore = model.idleOrder();
    const idleBefore = idleSessionsBefore.map((s) => s.id);
    const explicit = new Set<string>();
    const lease = model.openLeases[('k' in op ? op.k : 0) % Math.max(1, model.openLeases.length)];
    switch (op.t) {
      case 'new': acquire(undefined, IPS[op.ip], op.hold); break;
      case 'return': { const all = ids(); acquire(all[op.s % Math.max(1, all.length)], IPS[op.ip], op.hold); break; }
      case 'release': if (lease) release(lease); break;
      case 'lock': if (lease && !lease.proc.closed) await lease.proc.locks.tryLock('T', op.rec); break;
      case 'unlock': if (lease) await lease.proc.locks.unlock('T', op.rec); break;
      case 'spawn': if (lease && !lease.proc.closed && model.sessions.has(lease.sessionId)) {
        let end!: () => void;
        const gate = new Promise<void>((resolve) => { end = resolve; });
        const proc = lease.proc.spawn('task', () => gate);
        const s = model.session(lease.sessionId);
        s.tasks++;
        s.processes.add(proc);
        tasks.push({ proc, sessionId: lease.sessionId, end, ended: false });
      } break;
      case 'endTask': { const task = tasks.find((t) => !t.ended); if (task) {
        task.ended = true;
        const s = model.sessions.get(task.sessionId);
        if (s !== undefined) { s.tasks--; model.activity(s, clock.now()); model.endedAlone.add(task.proc); }
        task.end();
      } break; }
      case 'closeOut': { const all = ids(); const id = all[op.s % Math.max(1, all.length)]; if (id !== undefined) { explicit.add(id); void engine.closeSession(id); } break; }
      case 'closeIn': if (lease && model.sessions.has(lease.sessionId)) {
        explicit.add(lease.sessionId);
        lease.proc.vars.w = ++write;
        model.lastWritten.set(lease.proc, write);
        const busyElsewhere = model.session(lease.sessionId).tasks > 0;
        let done = false;
        void lease.run(() => engine.closeSession(lease.sessionId)).then(() => { done = true; });
        await settle(1);
        // With a spawned task still running the close waits for it (bounded by closeTimeoutMs) first.
        if (!busyElsewhere) assert.ok(done && Object.keys(lease.proc.vars).length === 0, 'logout: the handler goes on with a reset context');
      } break;
      case 'advance': clock.advance(op.ms); break;
      case 'cap': engine.setOption('maxSessions', op.n); capEver = Math.max(capEver, op.n); break;
      case 'timeout': engine.setOption('inactiveProcessTimeoutMs', op.ms); clock.advance(0); break;
    }
    await settle(1);
    absorb();
    await settle(1);
    for (const id of [...model.sessions.keys()]) if (!engine.sessions().some((s) => s.id === id)) model.vanished(id);

    // Invariants 4 and 5: a session that vanished without an explicit close was idle, evicted in LRU
    // order or due for timeout; a busy one never vanishes on its own.
    const after = new Set(engine.sessions().map((s) => s.id));
    const vanished = [...before].filter((id) => !after.has(id) && !explicit.has(id));
    for (const id of vanished) assert.ok(idleBefore.includes(id), `invariant 4: ${id} was busy when it closed`);
    if (op.t === 'advance' || op.t === 'timeout') {
      const timeoutMs = engine.getOption('inactiveProcessTimeoutMs');
      const due = idleSessionsBefore.filter((s) => s.lastActivityAtMs + timeoutMs <= clock.now()).map((s) => s.id);
      assert.deepEqual(new Set(vanished), new Set(due.filter((id) => !explicit.has(id))), `timeouts: exactly the idle sessions past their deadline (vanished ${vanished.join()}, due ${due.join()}, idle before ${idleBefore.join()})`);
    } else {
      assert.deepEqual(new Set(vanished), new Set(idleBefore.filter((id) => !explicit.has(id)).slice(0, vanished.length)), `invariant 5: evictions take the least recently active idle sessions (vanished ${vanished.join()}, idle before ${idleBefore.join()})`);
    }
    const stats = engine.stats();
    assert.ok(stats.sessions <= Math.max(capEver, before.size), 'invariant 6: sessions bounded by the cap');
    assert.ok(engine.sessions().every((s) => s.queuedRequests <= MAX_QUEUED), 'invariant 6: queues bounded');
  }

  // The end: stop, let everything finish, then every process of every closed session was hooked once.
  let stopped = false;
  void engine.stop().then(() => { stopped = true; });
  for (let round = 0; round < 20 && !stopped; round++) {
    for (const lease of [...model.openLeases]) release(lease);
    for (const task of tasks) if (!task.ended) { task.ended = true; task.end(); }
    await settle(1);
    absorb();
  }
  assert.ok(stopped, `stop() completes once every request and task has ended (stats ${JSON.stringify(engine.stats())}, pending ${pendings.length})`);
  assert.equal(pendings.filter((p) => !p.settled).length, 0, 'every request was answered');
  const hookedTotal = [...hooks.values()].reduce((a, b) => a + b, 0);
  assert.equal(hookedTotal, closeEvents.reduce((a, e) => a + e.processCount, 0), 'invariant 1: one hook per process of each close');
  assert.ok([...hooks.values()].every((n) => n === 1), 'invariant 1: exactly once');
  assert.equal(engine.stats().sessions, 0);
  assert.equal(engine.lockManager instanceof Object && (engine.lockManager as unknown as { size: number }).size, 0, 'invariant 3: no lock left');
  assert.deepEqual(errors, [], 'no hook, drain or handler error');
}

// CI profile: 10,000 runs; a local `npm test` runs 1,000 (quick feedback); `npm run test:long` 100,000.
const runs = Number(process.env.PROPERTY_RUNS ?? (process.env.CI === 'true' ? 10_000 : 1_000));
const seed = process.env.PROPERTY_SEED === undefined ? undefined : Number(process.env.PROPERTY_SEED);

test(`random interleavings keep invariants 1–7 (${runs} runs${seed === undefined ? '' : `, seed ${seed}`})`, { timeout: 600_000 }, async () => {
  await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 30 }), runScenario), { numRuns: runs, seed, endOnFailure: false, verbose: 1 });
});
