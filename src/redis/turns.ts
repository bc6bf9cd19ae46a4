import { realTimer, type TimerHandle } from '../clock.js';

/** A request of this node waiting for its session's process; `wake` is set while it waits. */
export interface Waiter {
  wake: (() => void) | undefined;
  /** The session it waits for: changes when the session is regenerated meanwhile (`move`). */
  sessionId: string;
}

interface EntersOnTheirWay {
  count: number;
  /** Releases of the session announced while enters of it were on their way. */
  releases: number;
}

/**
 * The requests of this node that wait for a busy process, per session, first come first served: the
 * head tries again when a release is announced (or on a poll, since a pub/sub message can be lost in a
 * reconnect), and a newcomer queues behind the waiting ones instead of overtaking them.
 */
export class TurnQueues {
  readonly #bySession = new Map<string, Waiter[]>();
  /**
   * Sessions with an enter of this node on its way to Redis, by id: whether a release was announced
   * meanwhile. An enter answered 'busy' after such a release would otherwise wait a poll for the wake
   * it missed (it was not queued yet, or between two tries).
   */
  readonly #entering = new Map<string, EntersOnTheirWay>();
  readonly #pollIntervalMs: number;

  constructor(pollIntervalMs: number) {
    this.#pollIntervalMs = pollIntervalMs;
  }

  /** Requests of this session waiting here. */
  waiting(id: string): number {
    return this.#bySession.get(id)?.length ?? 0;
  }

  get total(): number {
    let total = 0;
    for (const list of this.#bySession.values()) total += list.length;
    return total;
  }

  enqueue(id: string): Waiter {
    const waiter: Waiter = { wake: undefined, sessionId: id };
    const list = this.#bySession.get(id);
    if (list === undefined) this.#bySession.set(id, [waiter]);
    else list.push(waiter);
    return waiter;
  }

  /**
   * Resolves when the waiter is at the head and a release was announced, or at the head on a poll;
   * `stillWaiting` runs on each poll it spends behind others (to stay counted in Redis).
   */
  turn(waiter: Waiter, stillWaiting?: () => void): Promise<void> {
    return new Promise<void>((resolve) => {
      let timer: TimerHandle | undefined;
      waiter.wake = () => {
        waiter.wake = undefined;
        timer?.cancel();
        resolve();
      };
      const poll = (): void => {
        if (waiter.wake === undefined) return;
        if (this.isHead(waiter)) return waiter.wake();
        stillWaiting?.();
        timer = realTimer(poll, this.#pollIntervalMs);
      };
      timer = realTimer(poll, this.#pollIntervalMs);
    });
  }

  /** The waiter got in, or gave up: if it was the head, the next one may try. */
  dequeue(id: string, waiter: Waiter): void {
    const list = this.#bySession.get(id);
    if (list === undefined) return;
    const index = list.indexOf(waiter);
    if (index >= 0) list.splice(index, 1);
    if (list.length === 0) this.#bySession.delete(id);
    else if (index === 0) this.wakeHead(id);
  }

  /**
   * The session was regenerated: its waiters here wait for it under its new id, in the same order,
   * behind any that already do.
   */
  move(fromId: string, toId: string): void {
    const moving = this.#bySession.get(fromId);
    if (moving === undefined || fromId === toId) return;
    this.#bySession.delete(fromId);
    for (const waiter of moving) waiter.sessionId = toId;
    const list = this.#bySession.get(toId);
    if (list === undefined) this.#bySession.set(toId, moving);
    else list.push(...moving);
  }

  /** Whether the waiter is the first of its session's waiters here (the one that may try). */
  isHead(waiter: Waiter): boolean {
    return this.#bySession.get(waiter.sessionId)?.[0] === waiter;
  }

  /** Every waiter tries again now (the node stops: they are refused). */
  wakeAll(): void {
    for (const list of this.#bySession.values()) for (const waiter of [...list]) waiter.wake?.();
  }

  /** A process of the session was released (here, or announced by 'r'): its head tries again, and so will an enter on its way. */
  released(id: string): void {
    const entering = this.#entering.get(id);
    if (entering !== undefined) entering.releases++;
    this.wakeHead(id);
  }

  /** The head of the session's waiters here tries again now. */
  wakeHead(id: string): void {
    this.#bySession.get(id)?.[0]?.wake?.();
  }

  /**
   * An enter of the session leaves for Redis: the releases counted so far, to pass to `entered` once it
   * is answered (the session's record stays while any of its enters is on its way).
   */
  entering(id: string): number {
    let record = this.#entering.get(id);
    if (record === undefined) {
      record = { count: 0, releases: 0 };
      this.#entering.set(id, record);
    }
    record.count++;
    return record.releases;
  }

  /** The enter was answered: whether a release of the session was announced while it was on its way. */
  entered(id: string, releasesBefore: number): boolean {
    const record = this.#entering.get(id);
    if (record === undefined) return false;
    if (--record.count === 0) this.#entering.delete(id);
    return record.releases !== releasesBefore;
  }
}
