// The engine's AsyncLocalStorage (FrameScopedStorage on Node 24's frames, plain elsewhere) answers
// getStore() as a plain AsyncLocalStorage does, in and after every kind of run: each scenario runs on
// both and the answers are compared.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AsyncLocalStorage } from 'node:async_hooks';
import { EventEmitter } from 'node:events';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { AsyncContext } from '../src/runs.js';

type Als = AsyncLocalStorage<object>;
const engineAls = (): Als => new AsyncContext().als as unknown as Als;
const plainAls = (): Als => new AsyncLocalStorage<object>();

async function both(scenario: (a: Als, b: Als) => Promise<unknown[]>): Promise<void> {
  const expected = await scenario(plainAls(), plainAls());
  const got = await scenario(engineAls(), engineAls());
  assert.deepEqual(got, expected);
}

const A = { a: 1 };
const A2 = { a: 2 };
const B = { b: 1 };
const name = (x: unknown): string => (x === A ? 'A' : x === A2 ? 'A2' : x === B ? 'B' : String(x));

test('a run inside a run of the same storage', () => both(async (a) => {
  const seen: unknown[] = [];
  a.run(A, () => {
    seen.push(name(a.getStore()));
    a.run(A2, () => seen.push(name(a.getStore())));
    seen.push(name(a.getStore()));
  });
  seen.push(name(a.getStore()));
  return seen;
}));

test('a run of storage A inside a run of storage B', () => both(async (a, b) => {
  const seen: unknown[] = [];
  b.run(B, () => {
    a.run(A, () => seen.push(name(a.getStore()), name(b.getStore())));
    seen.push(name(a.getStore()), name(b.getStore()));
  });
  seen.push(name(a.getStore()), name(b.getStore()));
  return seen;
}));

test('a run whose callback throws, outer and nested', () => both(async (a) => {
  const seen: unknown[] = [];
  assert.throws(() => a.run(A, () => { throw new Error('x'); }));
  seen.push(name(a.getStore()));
  a.run(A, () => {
    assert.throws(() => a.run(A2, () => { throw new Error('y'); }));
    seen.push(name(a.getStore()));
  });
  seen.push(name(a.getStore()));
  return seen;
}));

test('a callback returning a promise: after its await inside and the caller\'s await outside', () => both(async (a, b) => {
  const seen: unknown[] = [];
  await a.run(A, async () => {
    await nextTurn();
    seen.push(name(a.getStore()));
    await Promise.resolve();
    seen.push(name(a.getStore()));
  });
  seen.push(name(a.getStore()));
  await b.run(B, async () => {
    await a.run(A, async () => { await nextTurn(); seen.push(name(a.getStore()), name(b.getStore())); });
    seen.push(name(a.getStore()), name(b.getStore()));
  });
  seen.push(name(a.getStore()), name(b.getStore()));
  return seen;
}));

test('bind and snapshot made in a run, called later outside', () => both(async (a) => {
  const seen: unknown[] = [];
  const bound = a.run(A, () => AsyncLocalStorage.bind(() => name(a.getStore())));
  const snap = a.run(A, () => AsyncLocalStorage.snapshot());
  seen.push(bound(), snap(() => name(a.getStore())), name(a.getStore()));
  await nextTurn();
  seen.push(bound(), snap(() => name(a.getStore())));
  return seen;
}));

test('timers, immediates and emitters made in a run fire later', () => both(async (a) => {
  const seen: unknown[] = [];
  const emitter = new EventEmitter();
  let fired!: () => void;
  const done = new Promise<void>((resolve) => { fired = resolve; });
  // Done once all four have been seen (a timer and an immediate may fire in either order on a busy machine).
  const see = (what: string): void => {
    seen.push(what);
    if (seen.length === 4) fired();
  };
  a.run(A, () => {
    setTimeout(() => see(`timeout:${name(a.getStore())}`), 1);
    setImmediate(() => see(`immediate:${name(a.getStore())}`));
    queueMicrotask(() => see(`microtask:${name(a.getStore())}`));
    emitter.on('x', () => { see(`emit:${name(a.getStore())}`); });
  });
  emitter.emit('x');
  await done;
  seen.sort();
  return seen;
}));

test('a run while the caller\'s frame is shared with a promise made just before', () => both(async (a, b) => {
  const seen: unknown[] = [];
  const before = Promise.resolve().then(() => name(a.getStore()));
  a.run(A, () => {});
  seen.push(await before);
  await b.run(B, async () => {
    const beforeInB = Promise.resolve().then(() => [name(a.getStore()), name(b.getStore())]);
    a.run(A, () => {});
    seen.push(await beforeInB, name(a.getStore()));
  });
  return seen;
}));

test('another storage entered during the run stays as run() left it', () => both(async (a, b) => {
  const seen: unknown[] = [];
  await Promise.resolve().then(() => {
    a.run(A, () => { b.enterWith(B); });
    seen.push(name(a.getStore()), name(b.getStore()));
  });
  return seen;
}));

test('exit() inside and outside a run', () => both(async (a) => {
  const seen: unknown[] = [];
  seen.push(a.exit(() => name(a.getStore())));
  a.run(A, () => { seen.push(a.exit(() => name(a.getStore())), name(a.getStore())); });
  seen.push(name(a.getStore()));
  return seen;
}));

test('a run from a snapshot taken outside, called inside another run of the same storage', () => both(async (a) => {
  const seen: unknown[] = [];
  const outside = AsyncLocalStorage.snapshot();
  a.run(A, () => {
    outside(() => a.run(A2, () => seen.push(name(a.getStore()))));
    seen.push(name(a.getStore()));
  });
  seen.push(name(a.getStore()));
  return seen;
}));

test('the storage kind follows the runtime: frames on Node 24 unless --no-async-context-frame', () => {
  const script = "import('" + fileURLToPath(new URL('../src/runs.ts', import.meta.url)) + "').then((m) => console.log(new m.AsyncContext().als.constructor.name))";
  const kind = (flags: string[]): string => execFileSync(process.execPath, [...flags, '--import', 'tsx', '-e', script], { encoding: 'utf8' }).trim();
  const major = Number(process.versions.node.split('.')[0]);
  assert.equal(kind([]), major >= 24 ? 'FrameScopedStorage' : 'AsyncLocalStorage');
  if (major >= 24) assert.equal(kind(['--no-async-context-frame']), 'AsyncLocalStorage');
});
