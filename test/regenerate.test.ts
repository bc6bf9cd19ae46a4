import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SessionEngine } from '../src/index.js';
import { request, sessionCookie, sessionIdOf, startServer } from './helpers.js';

test('regenerate moves the whole context to a fresh id at once: vars, selections and locks follow, the old id is dead', async () => {
  const closes: string[] = [];
  const engine = new SessionEngine<{ user?: string }>({ onClose: (proc) => { closes.push(proc.sessionId); } });
  try {
    const lease = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
    const oldId = lease.sessionId;
    lease.proc.vars.user = 'ann';
    lease.proc.selections.set('Orders', [3, 1, 2]);
    assert.equal(await lease.proc.locks.tryLock('Orders', 3), true);

    const newId = await lease.run(() => engine.regenerate(oldId));
    assert.ok(newId !== null && newId !== oldId && newId.length === 36);
    assert.equal(lease.sessionId, newId);
    assert.equal(lease.proc.sessionId, newId);
    assert.equal(lease.run(() => engine.currentSessionId()), newId);
    assert.deepEqual(lease.cookie(), { action: 'set', sessionId: newId, expiresAtMs: engine.sessionExpiration(newId)?.getTime() });
    assert.deepEqual((await lease.proc.locks.lockedBy('Orders', 3))?.sessionId, newId, 'lockedBy reports the new id');
    assert.equal(engine.sessionExpiration(oldId), null);
    assert.equal(engine.sessionProcessCount(oldId), 0);
    assert.equal(await engine.regenerate(oldId), null, 'the old id names nothing any more');
    lease.release();

    const again = await engine.acquire({ sessionId: newId, ip: '127.0.0.1' });
    assert.equal(again.proc, lease.proc);
    assert.deepEqual(again.proc.vars, { user: 'ann' });
    assert.deepEqual(again.proc.selections.get('Orders')?.keys, [3, 1, 2]);
    again.release();

    const attacker = await engine.acquire({ sessionId: oldId, ip: '127.0.0.1' });
    assert.notEqual(attacker.sessionId, oldId, 'a fixed (old) id gets a brand-new session');
    assert.notEqual(attacker.sessionId, newId);
    assert.deepEqual(attacker.proc.vars, {});
    attacker.release();
    assert.equal(await engine.closeSession(oldId), false);
    assert.deepEqual(closes, []);
  } finally {
    await engine.stop();
  }
});

test('after login over HTTP the response carries the regenerated cookie and only the new id reaches the session', async () => {
  const engine = new SessionEngine<{ user?: string }>();
  const server = await startServer(engine, async (req, res, proc) => {
    if (req.url === '/login') {
      proc.vars.user = 'ann';
      await engine.regenerate(proc.sessionId);
    }
    res.end(proc.vars.user ?? 'guest');
  });
  try {
    const first = await request(server.url);
    const before = sessionCookie(first);
    const login = await request(server.url, { path: '/login', cookie: before });
    const after = sessionCookie(login);
    assert.ok(after !== undefined && after !== before);
    assert.notEqual(sessionIdOf(login), sessionIdOf(first));
    assert.equal((await request(server.url, { cookie: after })).body, 'ann');
    assert.equal((await request(server.url, { cookie: before })).body, 'guest', 'the pre-login id is not the logged-in session');
  } finally {
    await engine.stop();
    await server.close();
  }
});

test('regenerate refuses a non-string id with a TypeError and answers null for unknown ids', async () => {
  const engine = new SessionEngine();
  try {
    await assert.rejects(engine.regenerate(42 as unknown as string), TypeError);
    assert.equal(await engine.regenerate('not-a-session'), null);
  } finally {
    await engine.stop();
  }
});
