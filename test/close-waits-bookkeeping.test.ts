// The record of runs awaiting closes (src/close-waits.ts) holds a wait only while it can matter: from the
// caller's await until that close ends, and only for a run still going. A wait left behind would keep its
// process (and its vars) for as long as the engine lives, one more for every awaited closeSession.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { WebProcess } from '../src/index.js';
import { CloseWaits } from '../src/close-waits.js';

type Vars = Record<string, unknown>;

function setup(): { waits: CloseWaits<Vars>; proc: WebProcess<Vars> } {
  // No close here waits for anything: no wait closes a cycle.
  return { waits: new CloseWaits<Vars>(() => undefined), proc: {} as WebProcess<Vars> };
}

/** A turn for the jobs V8 queues (an `await` calls `then` from one of them). */
const aTurnLater = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function closing(): { promise: Promise<boolean>; end: (closed: boolean) => void } {
  let end!: (closed: boolean) => void;
  const promise = new Promise<boolean>((resolve) => { end = resolve; });
  return { promise, end };
}

test('an awaited close is a wait until it ends, then nothing is left of it', async () => {
  const { waits, proc } = setup();
  const close = closing();
  const awaited = waits.watch(close.promise, { proc, released: false }, 'target');
  const result = (async () => await awaited)();
  await aTurnLater();
  assert.equal(waits.size, 1, 'the await is recorded');
  close.end(true);
  assert.equal(await result, true);
  assert.equal(waits.size, 0, 'the ended close left no wait');
});

test('awaiting a close that has ended already records no wait', async () => {
  const { waits, proc } = setup();
  const close = closing();
  const awaited = waits.watch(close.promise, { proc, released: false }, 'target');
  close.end(false);
  await close.promise;
  await aTurnLater();
  assert.equal(await awaited, false);
  assert.equal(waits.size, 0);
});

test('a close awaited from a run that is over (a callback outliving its request) records no wait', async () => {
  const { waits, proc } = setup();
  const close = closing();
  const awaited = waits.watch(close.promise, { proc, released: true }, 'target');
  const result = (async () => await awaited)();
  await aTurnLater();
  assert.equal(waits.size, 0, 'a run that is over awaits nothing');
  close.end(true);
  assert.equal(await result, true);
  assert.equal(waits.size, 0);
});

test('a close left alone, or started with .catch(log) and left, is no wait', async () => {
  const { waits, proc } = setup();
  const close = closing();
  const left = waits.watch(close.promise, { proc, released: false }, 'target');
  const caught = waits.watch(close.promise, { proc, released: false }, 'target');
  void left;
  caught.catch(() => {});
  await aTurnLater();
  assert.equal(waits.size, 0);
  close.end(true);
  await close.promise;
});
