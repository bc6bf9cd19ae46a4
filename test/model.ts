// A reference model of the engine for the property test: what must be true after each step, kept as
// simply as possible (plain maps, no timers). The property test drives the real engine and this model
// with the same random operations and compares them after every step. Processes are known by their
// processId: a store that keeps sessions elsewhere (Redis) hands each request a fresh object for the
// same process, so an object's identity says nothing there.
import assert from 'node:assert/strict';
import type { RequestLease } from '../src/index.js';

export type Vars = { w?: number; wa?: Uint8Array };

export interface ModelSession {
  /** Changes when the session is regenerated. */
  id: string;
  readonly ip: string;
  /** Open leases and running spawned tasks (the engine's "running"). */
  holders: number;
  queued: number;
  tasks: number;
  /** Order of the end of the last request or task: the idle list's order. */
  lastActivitySeq: number;
  lastActivityAtMs: number;
  /** Ids of its processes (request processes and spawned tasks). */
  readonly processes: Set<string>;
  /** Ids of its request processes (at most processesPerSession when each was made). */
  readonly requestProcesses: Set<string>;
}

export class Model {
  readonly sessions = new Map<string, ModelSession>();
  /** Sessions the engine no longer lists (closing or closed), kept for their processes. */
  readonly gone = new Map<string, ModelSession>();
  /** Every id the engine ever issued: a dead one must never come back. */
  readonly dead = new Set<string>();
  /** The dead ids that died by regenerate: their session lives on under another id, nothing closes. */
  readonly renamedAway = new Set<string>();
  /** The last value of `vars.w` a request left in each process, by processId. */
  readonly lastWritten = new Map<string, number>();
  /** Processes (by id) whose task ended on its own (they leave their session without a hook). */
  readonly endedAlone = new Set<string>();
  readonly openLeases: RequestLease<Vars>[] = [];
  #seq = 0;

  session(id: string): ModelSession {
    const s = this.sessions.get(id);
    assert.ok(s, `model knows session ${id}`);
    return s;
  }

  /** A lease handed out: checks one request per process (invariant 7) and records its holder. */
  leased(lease: RequestLease<Vars>, ip: string, nowMs: number): void {
    assert.ok(!this.openLeases.some((l) => l.proc.processId === lease.proc.processId), 'invariant 7: two requests never run in one process at once');
    assert.ok(!this.dead.has(lease.sessionId), 'invariant 3: a dead id never comes back');
    let s = this.sessions.get(lease.sessionId);
    if (s === undefined) {
      s = { id: lease.sessionId, ip, holders: 0, queued: 0, tasks: 0, lastActivitySeq: this.#seq++, lastActivityAtMs: nowMs, processes: new Set(), requestProcesses: new Set() };
      this.sessions.set(s.id, s);
    }
    s.holders++;
    s.processes.add(lease.proc.processId);
    s.requestProcesses.add(lease.proc.processId);
    this.openLeases.push(lease);
  }

  released(lease: RequestLease<Vars>, nowMs: number): void {
    this.openLeases.splice(this.openLeases.indexOf(lease), 1);
    const s = this.sessions.get(lease.sessionId);
    if (s === undefined) return; // its session closed meanwhile
    s.holders--;
    this.activity(s, nowMs);
  }

  activity(s: ModelSession, nowMs: number): void {
    s.lastActivitySeq = this.#seq++;
    s.lastActivityAtMs = nowMs;
  }

  /**
   * Whether a request for `s` starts at once: fewer than processesPerSession of its requests run (a
   * lowered value applies at once, whatever processes the session has), and a request process is free or
   * one more may be made; and nobody waits already (first come, first served).
   */
  startsAtOnce(s: ModelSession, processesPerSession: number): boolean {
    return s.queued === 0 && s.holders < processesPerSession && (s.requestProcesses.size > s.holders || s.requestProcesses.size < processesPerSession);
  }

  /** regenerate: the same session, context and processes, under a new id; the old id is dead. */
  renamed(oldId: string, newId: string): void {
    const s = this.session(oldId);
    this.sessions.delete(oldId);
    this.dead.add(oldId);
    this.renamedAway.add(oldId);
    s.id = newId;
    this.sessions.set(newId, s);
  }

  isIdle(s: ModelSession): boolean {
    return s.holders === 0 && s.queued === 0 && s.tasks === 0;
  }

  /** Idle sessions, least recently active first: the eviction order. */
  idleOrder(): ModelSession[] {
    return [...this.sessions.values()].filter((s) => this.isIdle(s)).sort((a, b) => a.lastActivitySeq - b.lastActivitySeq);
  }

  /** The engine stopped listing the session: its id is dead from now on. */
  vanished(id: string): void {
    const s = this.sessions.get(id);
    if (s !== undefined) this.gone.set(id, s);
    this.sessions.delete(id);
    this.dead.add(id);
  }

  /** Ids of the processes of an open or gone session. */
  processesOf(id: string): Set<string> {
    return (this.sessions.get(id) ?? this.gone.get(id))?.processes ?? new Set();
  }
}
