import { realTimer, type TimerHandle } from '../clock.js';
import type { SessionVars } from '../process.js';
import type { NodeServices } from './node.js';

/** Closes a node remembers, the latest announced ('c') or finished ('x'): a lost 'x' must not grow them for ever. */
const CLOSES_KEPT = 4_096;

/**
 * What a close waits for on other nodes: the session's processes to be released (a close drains them
 * wherever they run) and another node's close to finish (a closeSession that node had claimed). Pub/sub
 * wakes each wait at once ('r' released, 'x' closed); a poll every pollIntervalMs covers a message lost
 * in a reconnect.
 */
export class ClusterWaits<Vars extends SessionVars> {
  readonly #node: NodeServices<Vars>;
  /** Wakes the drain wait of a session when one of its processes is released. */
  readonly #drainWakers = new Map<string, () => void>();
  /** closeSession callers waiting for a close another node claimed. */
  readonly #closedWaiters = new Map<string, (() => void)[]>();
  /** The latest CLOSES_KEPT closes this node heard of: announced ('c') and not finished, or finished ('x'). */
  readonly #closes = new Map<string, 'announced' | 'finished'>();

  constructor(node: NodeServices<Vars>) {
    this.#node = node;
  }

  /** A process of `id` was released somewhere ('r'). */
  released(id: string): void {
    this.#drainWakers.get(id)?.();
  }

  /** The close of `id` was claimed, here or elsewhere ('c'). */
  closeAnnounced(id: string): void {
    this.#remember(id, 'announced');
  }

  /**
   * Whether a close of `id` was announced and has not finished: an enter's reply read after that is from
   * an enter Redis ran just before the claim (ids are never reused), and its request must stop.
   */
  closeUnderWay(id: string): boolean {
    return this.#closes.get(id) === 'announced';
  }

  /** Whether this node heard the close of `id` finish (among the latest it remembers). */
  closeFinished(id: string): boolean {
    return this.#closes.get(id) === 'finished';
  }

  /** The close of `id` finished, here or elsewhere ('x'). */
  finishedElsewhere(id: string): void {
    this.#remember(id, 'finished');
    this.#node.closeEnded(id);
    const waiters = this.#closedWaiters.get(id);
    this.#closedWaiters.delete(id);
    for (const resolve of waiters ?? []) resolve();
  }

  #remember(id: string, state: 'announced' | 'finished'): void {
    this.#closes.delete(id);
    this.#closes.set(id, state);
    if (this.#closes.size > CLOSES_KEPT) {
      const oldest = this.#closes.keys().next();
      if (oldest.done !== true) this.#closes.delete(oldest.value);
    }
  }

  /** Resolves once `isDrained()` answers true: tried on each release of the session, and on each poll. */
  drained(id: string, isDrained: () => Promise<boolean>): { promise: Promise<void>; cancel(): void } {
    let cancelled = false;
    let poll: TimerHandle | undefined;
    const promise = new Promise<void>((resolve) => {
      let checking = false;
      const check = (): void => {
        if (cancelled || checking) return;
        checking = true;
        isDrained().then((done) => {
          checking = false;
          if (done) resolve();
        }, () => { checking = false; });
      };
      this.#drainWakers.set(id, check);
      const tick = (): void => {
        if (cancelled) return;
        check();
        poll = realTimer(tick, this.#node.settings.pollIntervalMs);
      };
      poll = realTimer(tick, this.#node.settings.pollIntervalMs);
    });
    return {
      promise,
      cancel: () => {
        cancelled = true;
        poll?.cancel();
        this.#drainWakers.delete(id);
      },
    };
  }

  /** Resolves when another node's close of `id` has finished (its key is gone, if the message was lost). */
  closedElsewhere(id: string): Promise<void> {
    // Its 'x' may be read before the reply that said another node was closing it.
    if (this.#closes.get(id) === 'finished') return Promise.resolve();
    return new Promise<void>((resolve) => {
      const list = this.#closedWaiters.get(id) ?? [];
      list.push(resolve);
      this.#closedWaiters.set(id, list);
      const { redis, settings } = this.#node;
      const tick = (): void => {
        if (!this.#closedWaiters.has(id)) return;
        // This node stopped (its clients may be closed): no answer will come, the wait ends.
        if (this.#node.retries.stopped) {
          const waiters = this.#closedWaiters.get(id);
          this.#closedWaiters.delete(id);
          for (const wake of waiters ?? []) wake();
          return;
        }
        redis.exists(`${settings.prefix}s:${id}`).then((n) => (n === 0 ? this.finishedElsewhere(id) : realTimer(tick, settings.pollIntervalMs)), () => realTimer(tick, settings.pollIntervalMs));
      };
      realTimer(tick, settings.pollIntervalMs);
    });
  }
}
