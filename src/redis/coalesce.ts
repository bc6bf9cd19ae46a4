import type { Writable } from 'node:stream';

/**
 * Script commands whose writes to Redis are coalesced: on a client the store made itself, every script
 * call made in one turn of the event loop leaves in one system call, at the end of the turn, instead of
 * one write each.
 *
 * Why: under load the requests that arrive in one turn (one per connection with data) each sent their
 * enter as soon as they were parsed; written one by one, each cost a `write` on this node and a `read`
 * and a reply `write` on Redis. Corked until the turn's end, they went as one `writev`, Redis read them
 * in one go and answered them in one go. Measured with `npm run bench -- --redis`: Redis's CPU per
 * request fell from about 40 to 29 µs, the server's from about 76 to 65 µs, and requests per second rose
 * by 15 to 30 %. Since the turn's writes leave from its check phase anyway, the enters of a turn are now
 * one call sent from there (enters.ts); the cork still gathers it, the batch of releases and the turn's
 * other calls into one write. The cost is latency of at most the rest of the turn (the poll phase's other callbacks): the
 * uncork runs in the turn's check phase, and a batch sent from the check phase itself lets go at once
 * (`flushWrites`).
 *
 * A client the application passes in is left as it is: the cork would hold its own commands too (sent
 * in the same turn after one of ours), and it keeps whatever auto-pipelining it was given. ioredis's own
 * auto-pipelining batches per tick (the requests of one connection) and at more CPU per command than
 * the writes it saves (measured: 17 vs 13 µs per script call).
 */

/** Taken when this module loads: fake timers installed later (a test's) must not hold the socket forever. */
const nextCheckPhase = globalThis.setImmediate;

/** Clients whose script calls are coalesced: those the store made itself. */
const coalescing = new WeakSet<object>();
/** Streams corked until the end of this turn, with the cork's own mark (a later turn's cork is another). */
const corked = new WeakMap<Writable, object>();

/** A client with its connection (ioredis's `Redis` has one; a `Cluster` has none and is left alone). */
interface WithStream {
  readonly stream?: Writable;
}

/** The store made this client: its script calls of one turn leave together. */
export function coalesceWritesOf(client: object): void {
  coalescing.add(client);
}

/** Whether the client's script calls of one turn leave together (the store made it). */
export function coalesces(client: object): boolean {
  return coalescing.has(client);
}

/** Per client, the batches that go ahead of any other script call made after theirs (`sendAheadOfLaterCalls`). */
const ordered = new WeakMap<object, (() => void)[]>();

/**
 * A batch of the client's (ScriptBatches) whose queued calls must reach Redis before any script call
 * made after them: `flush` runs before each such call. So a batch changes when its calls leave, never
 * their order with the client's other calls (an enter queued before a waiter's registration lands
 * before it, as it did when each enter was its own call). Returns the way to stop: a store that stops
 * takes its batch off, or a client the application shares between stores made one after another would
 * keep every stopped store reachable and flush it before each call.
 */
export function sendAheadOfLaterCalls(client: object, flush: () => void): () => void {
  let flushes = ordered.get(client);
  if (flushes === undefined) ordered.set(client, flushes = []);
  flushes.push(flush);
  const list = flushes;
  return () => {
    const index = list.indexOf(flush);
    if (index !== -1) list.splice(index, 1);
    if (list.length === 0 && ordered.get(client) === list) ordered.delete(client);
  };
}

/** Corks the client's connection until the end of this turn, unless it is corked already. */
function holdWrites(client: WithStream): void {
  const stream = client.stream;
  if (stream === undefined || corked.has(stream) || !stream.writable) return;
  const mark = {};
  corked.set(stream, mark);
  stream.cork();
  nextCheckPhase(() => {
    if (corked.get(stream) === mark) letGo(stream); // else let go already (flushWrites)
  });
}

function letGo(stream: Writable): void {
  corked.delete(stream);
  stream.uncork();
}

/**
 * Lets what this turn holds leave now: for a batch sent from the check phase, whose own end-of-turn
 * uncork would come only in the next turn (after its timers and its whole poll phase).
 */
export function flushWrites(client: object): void {
  const stream = (client as WithStream).stream;
  if (stream !== undefined && corked.has(stream)) letGo(stream);
}

/**
 * Defines a script command on an ioredis client (`defineCommand`: `name` and `nameBuffer`) whose calls
 * are coalesced with the others of the same turn when the store made the client (`coalesceWritesOf`);
 * on any other client the command is ioredis's own.
 */
export function defineCoalescedCommand(client: object, name: string, definition: { lua: string; numberOfKeys?: number }): void {
  const target = client as WithStream & Record<string, unknown> & { defineCommand(name: string, definition: { lua: string; numberOfKeys?: number }): void };
  target.defineCommand(name, definition);
  for (const method of [name, `${name}Buffer`]) {
    const call = target[method];
    if (typeof call !== 'function') continue;
    target[method] = function coalesced(this: unknown, ...args: unknown[]): unknown {
      if (coalescing.has(target)) holdWrites(target);
      // A batch's own call comes through here too: its queue is empty by then, so it flushes nothing.
      const flushes = ordered.get(target);
      if (flushes !== undefined) for (const flush of flushes) flush();
      return Reflect.apply(call, this, args);
    };
  }
}
