/**
 * What a node knows of its own lease (P node:<n>, renewed by its heartbeats). Another node's sweep takes
 * it for dead only once no beat of it has run in Redis for two leases (the key expired, then stayed
 * missing a lease more: close-scripts.ts isDead), and then frees the processes it runs and takes over
 * the closes it claimed. A node stalled that long (a stopped process, a long GC or VM pause, a network
 * cut) goes on, when it wakes, with replies Redis gave before the sweep: what it does with them may have
 * been done elsewhere since. Beats go every third of a lease, so while the node is well a beat sent less
 * than a lease ago has been answered; when none has, the node is in doubt. A reply is judged by its own
 * round trip too: one that took a lease or more may have been read after a stall, whatever the beats say
 * (replies come in the order their calls went, but their continuations need not run in that order).
 * In doubt, or on such a reply, the node asks Redis again before a hook (close-pipeline.ts) and runs no
 * request or task on a process the reply granted. Timed on the monotonic clock. (What a node's next beat
 * learns when a sweep did take it for dead: heartbeat.ts.)
 */
export class NodeLease {
  readonly #leaseMs: number;
  /** performance.now() when the latest beat that Redis answered was sent. */
  #answeredBeatSentAtMs: number;

  constructor(leaseMs: number) {
    this.#leaseMs = leaseMs;
    this.#answeredBeatSentAtMs = performance.now();
  }

  /** A beat sent at `sentAtMs` (performance.now()) was answered. */
  answered(sentAtMs: number): void {
    if (sentAtMs > this.#answeredBeatSentAtMs) this.#answeredBeatSentAtMs = sentAtMs;
  }

  /**
   * Whether another node may have taken this one for dead before now: no beat sent within the last lease
   * has been answered, or the call whose reply is being read (sent at `sentAtMs`) took a lease or more.
   */
  inDoubt(sentAtMs = Number.POSITIVE_INFINITY): boolean {
    const nowMs = performance.now();
    return nowMs - this.#answeredBeatSentAtMs >= this.#leaseMs || nowMs - sentAtMs >= this.#leaseMs;
  }

  /**
   * Throws, as a lost reply does (the request answers 503, a task fails without running; the sweep's
   * repair frees what the script took if it is still this node's), when a reply that gives this node a
   * process, to a call sent at `sentAtMs`, is read in doubt: the process may have been freed by a sweep
   * since, and be running elsewhere.
   */
  refuseIfInDoubt(what: 'enter' | 'create' | 'spawn', sentAtMs: number): void {
    if (this.inDoubt(sentAtMs)) throw new Error(`the ${what}'s reply came ${Math.round(performance.now() - sentAtMs)} ms after its call, with this node's last answered heartbeat sent ${Math.round(performance.now() - this.#answeredBeatSentAtMs)} ms ago (node lease ${this.#leaseMs} ms): this node may have been taken for dead meanwhile`);
  }
}
