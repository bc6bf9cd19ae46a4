import { SessionError } from '../errors.js';
import { conflictingOption, type OptionName } from '../options.js';
import type { SessionVars } from '../process.js';
import { extendKeys } from './node-keys.js';
import { keyTtlMs, unavailable, type NodeServices } from './node.js';

/**
 * The run-time options a cluster shares: an option set on one node is written to `P opts` and announced
 * ('o'), every other node applies it, and a node that starts, or comes back from a subscriber cut, reads
 * them all. Which of a node's own values a read must not undo is kept here.
 */
export class ClusterOptions<Vars extends SessionVars> {
  readonly #node: NodeServices<Vars>;
  readonly #started: () => Promise<void>;
  readonly #track: (work: Promise<unknown>) => void;
  /** Set on this node since construction: the start does not apply older stored values over them. */
  readonly #setHere = new Set<string>();
  /** Set on this node with the write to Redis not answered yet (name → how many): it lands after any read. */
  readonly #writing = new Map<string, number>();
  /** Per name with writes on their way: what a refused one takes back to (the last value the cluster took, else the one before). */
  readonly #fallback = new Map<string, unknown>();
  /** Per name: which `set` here was the last (a refusal takes back only the last one). */
  readonly #lastSet = new Map<string, number>();
  #setCount = 0;
  /** Set here while the store's start failed (name → value, and the one before): written by the next start. */
  readonly #unsent = new Map<string, { value: unknown; previous: unknown }>();
  /** Per name: the newest version of it this node holds (written here or applied; P optv: Redis's time of the write). */
  readonly #versions = new Map<string, number>();

  /** `track`: keeps a write going past a stop (the store waits for it). */
  constructor(node: NodeServices<Vars>, started: () => Promise<void>, track: (work: Promise<unknown>) => void) {
    this.#node = node;
    this.#started = started;
    this.#track = track;
  }

  /**
   * `setOption` on this node (the value validated and applied here; `previous` this node's before):
   * written to the cluster once the store has started, unless `shared` is false (a stopped node keeps it
   * to itself). Written only if the cluster holds no value of another option it cannot go with (two
   * nodes setting such a pair at about the same time): else it is taken back here, reported, and this
   * node takes the cluster's options.
   */
  set(name: OptionName, value: unknown, previous: unknown, shared: boolean): void {
    this.#setHere.add(name);
    if (!shared) return;
    const { ctx, redis, settings, nodeId } = this.#node;
    const conflict = conflictingOption(name, value);
    const seq = ++this.#setCount;
    this.#lastSet.set(name, seq);
    if (!this.#writing.has(name)) this.#fallback.set(name, previous);
    this.#writing.set(name, (this.#writing.get(name) ?? 0) + 1);
    /** Answered (`taken`: the cluster holds the value now); returns what a refusal of the name goes back to. */
    const landed = (taken: boolean): unknown => {
      if (taken) this.#fallback.set(name, value);
      const back = this.#fallback.get(name);
      const left = (this.#writing.get(name) ?? 1) - 1;
      if (left > 0) {
        this.#writing.set(name, left);
      } else {
        this.#writing.delete(name);
        this.#fallback.delete(name);
      }
      return back;
    };
    const written = this.#started()
      .then(undefined, (error: unknown) => {
        // The store's start failed: the next start writes it, if the value here is still this one.
        this.#unsent.set(name, { value, previous });
        throw error;
      })
      .then(() => redis.lwsSetOption(settings.prefix, nodeId, name, encodeOption(value), keyTtlMs(ctx, settings), conflict?.name ?? '', conflict === undefined ? '' : encodeOption(conflict.value)))
      .then(async (reply) => {
        const version = Number(reply);
        const refused = conflict !== undefined && version === 0;
        const back = landed(!refused);
        if (!refused) {
          // Newer than what this node heard meanwhile (another node's write Redis took first, announced
          // after this set here): this value is the cluster's, and the last set here goes back in force.
          if (!this.#isNewer(name, version)) return;
          this.#versions.set(name, version);
          if (this.#lastSet.get(name) === seq && encodeOption(ctx.options[name]) !== encodeOption(value)) applyHere(this.#node, name, encodeOption(value));
          return;
        }
        ctx.report(new SessionError('ERR_SESSION_INVALID_OPTION', `setOption('${name}', ${encodeOption(value)}) taken back: another node set ${conflict.name} to ${encodeOption(conflict.value)} first`), 'storeErrors');
        // Not over a later setOption of the name here (its own answer decides), nor over another node's value.
        if (this.#lastSet.get(name) === seq && encodeOption(ctx.options[name]) === encodeOption(value)) applyHere(this.#node, name, encodeOption(back));
        await this.applyAfterCut();
      }, (error: unknown) => {
        landed(false);
        throw error;
      });
    // A raised timeout: the open sessions' keys would still expire by the one of their last write.
    const timeout = name === 'inactiveProcessTimeoutMs' || name === 'inactiveSessionTimeoutMs';
    this.#track((timeout ? written.then(() => extendKeys(redis, settings.prefix, keyTtlMs(ctx, settings))) : written)
      .catch((error: unknown) => ctx.report(unavailable(error), 'storeErrors')));
  }

  /**
   * At the store's start: the cluster's options, but for those set on this node since construction;
   * then those set here while an earlier start failed are written.
   */
  async applyAtStart(): Promise<void> {
    // Nothing of this node's has reached Redis yet (its requests wait for the start): no keys to walk.
    await this.#applyStored((name) => this.#setHere.has(name), false);
    const unsent = [...this.#unsent];
    this.#unsent.clear();
    for (const [name, { value, previous }] of unsent) {
      if (encodeOption(this.#node.ctx.options[name as OptionName]) === encodeOption(value)) this.set(name as OptionName, value, previous, true);
    }
  }

  /**
   * After a subscriber cut ('o' messages lost): the cluster's options, those this node set itself and
   * another set again meanwhile included, but for one whose own write is still on its way.
   */
  applyAfterCut(): Promise<void> {
    return this.#applyStored((name) => this.#writing.has(name));
  }

  /**
   * An option another node set ('o'), at `version` of the name (none from a node of an earlier
   * version): not applied over a newer one this node holds (its own write Redis took later).
   */
  heard(name: string, json: string, version: number | undefined): void {
    this.#applyVersion(name, json, version);
  }

  /** Whether `version` of `name` is newer than the one this node holds. */
  #isNewer(name: string, version: number): boolean {
    return Number.isFinite(version) && version > (this.#versions.get(name) ?? 0);
  }

  /** Another node's value at `version` (undefined: unknown), unless this node holds a newer one. */
  #applyVersion(name: string, json: string, version: number | undefined, walk = true): void {
    if (version !== undefined && !this.#isNewer(name, version)) return;
    if (this.#applyOther(name, json, walk) && version !== undefined) this.#versions.set(name, version);
  }

  async #applyStored(keep: (name: string) => boolean, walk = true): Promise<void> {
    const { ctx, redis, settings } = this.#node;
    const [stored, versions] = await Promise.all([redis.hgetall(`${settings.prefix}opts`), redis.hgetall(`${settings.prefix}optv`)]);
    for (const [name, json] of Object.entries(stored)) {
      if (keep(name)) continue;
      const version = versions[name] === undefined ? undefined : Number(versions[name]);
      if (version !== undefined && !this.#isNewer(name, version)) continue;
      // Already so here: not applied again (no 'option' event for nothing).
      if (Object.hasOwn(ctx.options, name) && encodeOption((ctx.options as unknown as Record<string, unknown>)[name]) === json) {
        if (version !== undefined) this.#versions.set(name, version);
        continue;
      }
      this.#applyVersion(name, json, version, walk);
    }
  }

  /**
   * Another node's value, unless it cannot go with a value of this node's whose write is on its way (or
   * waits for the next start): the cluster refuses that write (it holds this value), which takes it back
   * and reads the options again.
   */
  #applyOther(name: string, json: string, walk: boolean): boolean {
    const conflict = conflictingOption(name as OptionName, decodeOption(json));
    if (conflict !== undefined && (this.#writing.has(conflict.name) || this.#unsent.has(conflict.name)) && encodeOption(this.#node.ctx.options[conflict.name]) === encodeOption(conflict.value)) return false;
    const { ctx, redis, settings } = this.#node;
    const ttlBefore = keyTtlMs(ctx, settings);
    applyHere(this.#node, name, json);
    // A timeout another node raised: that node walked the open sessions' keys, but this one's releases
    // and enters sent before it heard of it (or while its subscriber was cut) gave some of them their
    // old, shorter lifetime after that walk. This node walks them too: its connection runs the walk
    // after every call it sent before, and its later calls carry the raised lifetime.
    const ttlAfter = keyTtlMs(ctx, settings);
    if (walk && ttlAfter > ttlBefore) {
      this.#track(extendKeys(redis, settings.prefix, ttlAfter).catch((error: unknown) => ctx.report(unavailable(error), 'storeErrors')));
    }
    return true;
  }
}

/** An option from the cluster, validated and applied here; one refused is reported. */
function applyHere<Vars extends SessionVars>(node: NodeServices<Vars>, name: string, json: string): void {
  try {
    node.ctx.applyOption(name as OptionName, decodeOption(json));
  } catch (error) {
    node.ctx.report(unavailable(error), 'storeErrors');
  }
}

/**
 * An option's value as the cluster shares it: JSON, with `undefined` (an option reset to none, such as
 * cookieDomain) as null, which JSON has and no option takes.
 */
export function encodeOption(value: unknown): string {
  return JSON.stringify(value === undefined ? null : value);
}

function decodeOption(json: string): unknown {
  const value: unknown = JSON.parse(json);
  return value === null ? undefined : value;
}
