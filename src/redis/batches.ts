/** Taken when this module loads: fake timers installed later (a test's) must not hold a batch forever. */
const nextCheckPhase = globalThis.setImmediate;

/** A script argument as ioredis sends it. */
export type ScriptArg = string | number | Buffer;

/**
 * Calls of one script that this node makes about the same time, sent together: those made in one turn
 * of the event loop (the requests that arrived in it, the responses that ended in it) go as one call
 * from the turn's check phase, at most `maxPerCall` each (1: each is sent at once), and each caller
 * gets its own part of the reply. The script takes the count and the shared arguments first, then `argsPerItem` arguments per call, and answers
 * one element per call, in order. A Redis error rejects every call of the batch.
 */
export class ScriptBatches<Result> {
  readonly #argsPerItem: number;
  readonly #maxPerCall: number;
  readonly #maxBytesPerCall: number;
  readonly #send: (count: number, args: ScriptArg[]) => Promise<unknown>;
  #args: ScriptArg[] = [];
  #bytes = 0;
  #waiters: { resolve: (result: Result) => void; reject: (error: unknown) => void }[] = [];

  /**
   * `send(count, items)`: one script call for `count` items whose arguments follow one another in `items`.
   * `maxBytesPerCall`: a call holds items of at most that many bytes together (one larger goes alone), so
   * large arguments (process states) never add up past what Redis takes in one request.
   */
  constructor(argsPerItem: number, maxPerCall: number, send: (count: number, items: ScriptArg[]) => Promise<unknown>, maxBytesPerCall = Number.POSITIVE_INFINITY) {
    this.#argsPerItem = argsPerItem;
    this.#maxPerCall = maxPerCall;
    this.#maxBytesPerCall = maxBytesPerCall;
    this.#send = send;
  }

  add(item: readonly ScriptArg[]): Promise<Result> {
    if (item.length !== this.#argsPerItem) throw new TypeError(`a batched script call takes ${this.#argsPerItem} arguments, got ${item.length}`);
    let bytes = 0;
    for (const arg of item) bytes += typeof arg === 'number' ? 8 : arg.length;
    if (this.#waiters.length > 0 && this.#bytes + bytes > this.#maxBytesPerCall) this.flush();
    this.#bytes += bytes;
    return new Promise<Result>((resolve, reject) => {
      for (const arg of item) this.#args.push(arg);
      this.#waiters.push({ resolve, reject });
      if (this.#waiters.length === this.#maxPerCall) this.flush();
      else if (this.#waiters.length === 1) nextCheckPhase(() => this.flush());
    });
  }

  /** Sends what is queued now (the end of the turn, a full batch, or a call that must not overtake it). */
  flush(): void {
    const waiters = this.#waiters;
    if (waiters.length === 0) return; // sent already: when it filled up, or ahead of another call
    const args = this.#args;
    this.#args = [];
    this.#bytes = 0;
    this.#waiters = [];
    // A client that throws instead of rejecting (or answers a plain value) must not leave callers waiting.
    const sent = new Promise<unknown>((resolve) => resolve(this.#send(waiters.length, args)));
    sent.then((reply) => {
      if (!Array.isArray(reply) || reply.length !== waiters.length) {
        const error = new Error(`a batched script answered ${Array.isArray(reply) ? reply.length : typeof reply} results for ${waiters.length} calls`);
        for (const w of waiters) w.reject(error);
        return;
      }
      waiters.forEach((w, i) => w.resolve(reply[i] as Result));
    }, (error: unknown) => {
      for (const w of waiters) w.reject(error);
    });
  }
}
