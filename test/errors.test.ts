// Every error the package raises has a stable code from ERROR_CODES and an httpStatus, and the README's
// table lists exactly those codes with the statuses a client gets. Misuse (a wrong argument, a refused
// option) is a TypeError with a code too, never a bare TypeError.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { ERROR_CODES, SessionArgumentError, SessionEngine, SessionOptionError, memoryStore } from '../src/index.js';
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
  lease.release();
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
});

test('the README\'s error table lists every code of ERROR_CODES, once, with the status a client is answered (– for none)', async () => {
  const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8');
  const rows = new Map([...readme.matchAll(/^\| `(ERR_SESSION_[A-Z_]+)` \| (–|\d{3}) \|/gm)].map((m) => [m[1]!, m[2]!]));
  assert.deepEqual([...rows.keys()].sort(), Object.keys(ERROR_CODES).sort());
  for (const [code, status] of rows) {
    const { httpStatus } = ERROR_CODES[code as keyof typeof ERROR_CODES];
    if (status !== '–') assert.equal(Number(status), httpStatus, code);
  }
});
