// Every error the package raises has a stable code from ERROR_CODES and an httpStatus, and the README's
// table lists exactly those codes with the statuses a client gets. Misuse (a wrong argument, a refused
// option) is a TypeError with a code too, never a bare TypeError.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { ERROR_CODES, ManualClock, MemoryLockManager, SessionArgumentError, SessionEngine, SessionError, SessionOptionError, memoryStore, systemClock } from '../src/index.js';
import { Redis } from 'ioredis';
import { createRedisStore } from '../src/redis/index.js';
import { createServer } from '../src/adapters/node/index.js';
import { sessions as expressSessions } from '../src/adapters/express/index.js';
import { readBody } from '../src/adapters/node/index.js';
import { use4D } from '../src/compat-4d.js';

function coded(code: keyof typeof ERROR_CODES, kind: typeof SessionArgumentError | typeof SessionOptionError): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof kind && error instanceof TypeError, String(error));
    assert.equal(error.code, code);
    assert.equal(error.httpStatus, ERROR_CODES[code].httpStatus);
    assert.ok(error.message.startsWith(`${ERROR_CODES[code].message}: `), error.message);
    return true;
  };
}

test('a call with an argument the package cannot take is a SessionArgumentError (a TypeError with code ERR_SESSION_INVALID_ARGUMENT and an httpStatus)', async () => {
  const engine = new SessionEngine();
  const invalid = coded('ERR_SESSION_INVALID_ARGUMENT', SessionArgumentError);
  await assert.rejects(engine.closeSession(42 as unknown as string), invalid);
  await assert.rejects(engine.regenerate(null as unknown as string), invalid);
  assert.throws(() => createServer(engine, 'handler' as never), invalid);
  assert.throws(() => expressSessions({} as SessionEngine), invalid);
  await assert.rejects(readBody({} as never, { maxBytes: -1 }), invalid);
  const store = memoryStore();
  new SessionEngine({ store });
  assert.throws(() => new SessionEngine({ store }), invalid, 'a store serves one engine');
  assert.throws(() => createServer(null as never, () => {}), invalid);
  assert.throws(() => use4D(null as never), invalid);
  await assert.rejects(readBody(null as never), invalid);
  const lease = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
  assert.throws(() => lease.proc.spawn(7 as unknown as string, async () => {}), invalid);
  assert.throws(() => lease.proc.selections.set('Stock', null as never), invalid);
  // Refused before any lock manager sees them, so the memory store and Redis agree.
  await assert.rejects(lease.proc.locks.tryLock(null as never, null as never), invalid);
  await assert.rejects(lease.proc.locks.unlock({} as never, [] as never), invalid);
  await assert.rejects(lease.proc.locks.lockedBy('Stock', undefined as never), invalid);
  // A number that names no record (every NaN would be one lock).
  for (const key of [Number.NaN, Number.POSITIVE_INFINITY]) await assert.rejects(lease.proc.locks.tryLock('Stock', key), invalid);
  lease.release();
  // What a request brings (an adapter of the application's may pass anything).
  for (const request of [undefined, null, {}, { sessionId: 42, ip: '127.0.0.1' }, { sessionId: undefined, ip: 42 }]) {
    await assert.rejects(engine.acquire(request as never), invalid);
    assert.throws(() => engine.acquireNow(request as never), invalid);
  }
  // The lock manager called directly, as the Redis one already refused.
  const locks = new MemoryLockManager();
  const owner = { sessionId: 's', processId: 'p' };
  await assert.rejects(locks.tryLock(owner, null as never), invalid);
  await assert.rejects(locks.tryLock(null as never, { table: 'Stock', key: 1 }), invalid);
  await assert.rejects(locks.tryLock(owner, { table: 'Stock', key: Number.NaN }), invalid);
  assert.equal(await locks.unlock(owner, { table: 'Stock', key: Number.NaN }), false, 'what an earlier version let a process take can still be released');
  await assert.rejects(locks.unlock(owner, { table: 7, key: 1 } as never), invalid);
  await assert.rejects(locks.lockedBy(undefined as never), invalid);
  await assert.rejects(locks.releaseAll(owner, null as never), invalid);
  assert.equal(locks.size, 0);
  // The test clock: a step that is not a finite number would make now() NaN or a string.
  const clock = new ManualClock();
  assert.throws(() => clock.advance('5' as never), invalid);
  assert.throws(() => clock.advance(Number.NaN), invalid);
  assert.throws(() => new ManualClock(Number.NaN), invalid);
  assert.equal(clock.now(), new ManualClock().now());
  await engine.stop();
});

test('a refused option is a SessionOptionError (a TypeError with its code and an httpStatus), the Redis store\'s own options too', () => {
  const engine = new SessionEngine();
  assert.throws(() => engine.setOption('maxSessions', -1), coded('ERR_SESSION_INVALID_OPTION', SessionOptionError));
  assert.throws(() => new SessionEngine(null as never), coded('ERR_SESSION_INVALID_OPTION', SessionOptionError));
  assert.throws(() => new SessionEngine({ locks: 5 as never }), coded('ERR_SESSION_INVALID_OPTION', SessionOptionError));
  assert.throws(() => engine.setOption('nope' as never, 1 as never), coded('ERR_SESSION_UNKNOWN_OPTION', SessionOptionError));
  assert.throws(() => createRedisStore({ url: 'redis://127.0.0.1:6379', prefix: 'has space' }), coded('ERR_SESSION_INVALID_OPTION', SessionOptionError));
  assert.throws(() => createRedisStore({ url: 'redis://127.0.0.1:6379', typo: 1 } as never), coded('ERR_SESSION_UNKNOWN_OPTION', SessionOptionError));
  // The store's scripts build their keys from `prefix`: a client's keyPrefix would split its keys in two.
  const prefixed = new Redis({ lazyConnect: true, keyPrefix: 'app:' });
  try {
    assert.throws(() => createRedisStore({ redis: prefixed }), (error: unknown) => error instanceof SessionOptionError && error.code === 'ERR_SESSION_INVALID_OPTION' && /keyPrefix/.test(error.message));
  } finally {
    prefixed.disconnect();
  }
});

test('the README\'s error table lists every code of ERROR_CODES, once, with the status a client is answered (– for none)', async () => {
  const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8');
  const rows = new Map([...readme.matchAll(/^\| `(ERR_SESSION_[A-Z_]+)` \| (–|\d{3}) \|/gm)].map((m) => [m[1]!, m[2]!]));
  assert.deepEqual([...rows.keys()].sort(), Object.keys(ERROR_CODES).sort());
  for (const [code, status] of rows) {
    const { httpStatus } = ERROR_CODES[code as keyof typeof ERROR_CODES];
    assert.equal(status === '–' ? 500 : Number(status), httpStatus, code);
  }
});

test('ERROR_CODES (and systemClock, the other shared object the package exports) are frozen through: writing into them changes no error\'s status, no engine\'s clock', () => {
  assert.ok(Object.isFrozen(systemClock));
  assert.throws(() => { (systemClock as { now: () => number }).now = () => 0; }, TypeError);
  assert.ok(Math.abs(systemClock.now() - Date.now()) < 60_000);
  assert.ok(Object.isFrozen(ERROR_CODES));
  for (const entry of Object.values(ERROR_CODES)) assert.ok(Object.isFrozen(entry));
  assert.throws(() => { (ERROR_CODES.ERR_SESSION_LIMIT as { httpStatus: number }).httpStatus = 200; }, TypeError);
  assert.equal(new SessionError('ERR_SESSION_LIMIT').httpStatus, 503);
});
