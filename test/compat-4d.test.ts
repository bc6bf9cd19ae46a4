// 4D's commands through use4D(engine): WEB LEGACY CLOSE SESSION, WEB Get Current Session ID, WEB LEGACY
// GET SESSION EXPIRATION, WEB Get session process count. The option selectors are in compat-4d-options.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type CloseReason } from '../src/index.js';
import {
  use4D,
  Web_inactive_process_timeout,
  Web_inactive_session_timeout,
  Web_scalable_session,
} from '../src/compat-4d.js';
import { deferred, request, sessionIdOf, settle, startServer } from './helpers.js';
import { makeEngine, MINUTE, visit } from './compat-4d-support.js';

test('WEB LEGACY CLOSE SESSION closes the session once (hook runs) and returns false for unknown ids', async () => {
  const hooks: Array<{ id: string; reason: CloseReason; user: unknown }> = [];
  const engine = makeEngine<{ user?: string }>({
    init: () => ({}),
    onClose: (proc, reason) => { hooks.push({ id: proc.sessionId, reason, user: proc.vars.user }); },
  });
  try {
    const { WEB_LEGACY_CLOSE_SESSION, WEB_Get_session_process_count, WEB_LEGACY_GET_SESSION_EXPIRATION } = use4D(engine);
    const lease = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
    lease.proc.vars.user = 'bob';
    lease.release();
    const id = lease.sessionId;
    const other = await visit(engine);

    const [a, b] = await Promise.all([WEB_LEGACY_CLOSE_SESSION(id), WEB_LEGACY_CLOSE_SESSION(id)]);
    assert.equal(a, true);
    assert.equal(b, true);
    assert.deepEqual(hooks, [{ id, reason: 'closed', user: 'bob' }], 'once, with the context intact');
    assert.equal(WEB_Get_session_process_count(id), 0);
    assert.equal(WEB_LEGACY_GET_SESSION_EXPIRATION(id), null);
    assert.deepEqual(engine.sessions().map((s) => s.id), [other]);

    assert.equal(await WEB_LEGACY_CLOSE_SESSION(id), false, 'already closed');
    assert.equal(await WEB_LEGACY_CLOSE_SESSION('0f8fad5b-d9cb-469f-a165-70867728950e'), false);
    assert.equal(await WEB_LEGACY_CLOSE_SESSION(''), false);
    assert.equal(await WEB_LEGACY_CLOSE_SESSION('not an id'), false);
    assert.equal(hooks.length, 1);
    assert.equal(engine.sessions().length, 1, 'the other session is untouched');
  } finally {
    await engine.stop();
  }
});

test('WEB LEGACY CLOSE SESSION returns false in scalable mode and runs no hook', async () => {
  let hooks = 0;
  const engine = makeEngine({ mode: 'scalable', onClose: () => { hooks++; } });
  try {
    const { WEB_LEGACY_CLOSE_SESSION, WEB_Get_session_process_count } = use4D(engine);
    const id = await visit(engine);
    assert.equal(await WEB_LEGACY_CLOSE_SESSION(id), false);
    assert.equal(WEB_Get_session_process_count(id), 1, 'still there');
    assert.equal(hooks, 0);
  } finally {
    await engine.stop();
  }
});

test('WEB Get Current Session ID is the session of the running request (also across awaits and in the hook) and "" outside', async () => {
  const seenInHook: string[] = [];
  const engine = makeEngine({ onClose: () => { seenInHook.push(use4D(engine).WEB_Get_Current_Session_ID()); } });
  const { WEB_Get_Current_Session_ID } = use4D(engine);
  const server = await startServer(engine, async (_req, res) => {
    const before = WEB_Get_Current_Session_ID();
    await settle(1);
    res.end(JSON.stringify([before, WEB_Get_Current_Session_ID()]));
  });
  try {
    assert.equal(WEB_Get_Current_Session_ID(), '');
    const first = await request(server.url);
    const id = sessionIdOf(first);
    assert.ok(id);
    assert.deepEqual(JSON.parse(first.body), [id, id]);

    const second = await request(server.url);
    const otherId = sessionIdOf(second);
    assert.notEqual(otherId, id);
    assert.deepEqual(JSON.parse(second.body), [otherId, otherId]);

    assert.equal(WEB_Get_Current_Session_ID(), '', 'outside any request');
    assert.equal(await engine.closeSession(id), true);
    assert.deepEqual(seenInHook, [id]);
  } finally {
    await engine.stop();
    await server.close();
  }
});

test('WEB Get Current Session ID is "" in a request of mode none', async () => {
  const engine = makeEngine({ mode: 'none' });
  try {
    const { WEB_Get_Current_Session_ID } = use4D(engine);
    const lease = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
    try {
      assert.equal(lease.run(() => WEB_Get_Current_Session_ID()), '');
    } finally {
      lease.release();
    }
  } finally {
    await engine.stop();
  }
});

test('WEB LEGACY GET SESSION EXPIRATION is the last request time + inactive session timeout (the one given then, or a lower current one), and null for unknown ids or outside legacy mode', async () => {
  const clock = new ManualClock();
  const engine = makeEngine({ clock, inactiveSessionTimeoutMs: 30 * MINUTE });
  try {
    const { WEB_LEGACY_GET_SESSION_EXPIRATION, WEB_SET_OPTION } = use4D(engine);
    const start = clock.now();
    const id = await visit(engine);
    assert.equal(WEB_LEGACY_GET_SESSION_EXPIRATION(id)?.getTime(), start + 30 * MINUTE);

    clock.advance(10 * MINUTE);
    assert.equal(WEB_LEGACY_GET_SESSION_EXPIRATION(id)?.getTime(), start + 30 * MINUTE, 'time alone does not move it');
    assert.equal(await visit(engine, id), id);
    assert.equal(WEB_LEGACY_GET_SESSION_EXPIRATION(id)?.getTime(), start + 40 * MINUTE, 'reset by the request');

    WEB_SET_OPTION(Web_inactive_session_timeout, 60);
    assert.equal(WEB_LEGACY_GET_SESSION_EXPIRATION(id)?.getTime(), start + 40 * MINUTE, 'a raised timeout reaches the cookie with its next request (the browser keeps the Expires it was given)');
    assert.equal(await visit(engine, id), id);
    assert.equal(WEB_LEGACY_GET_SESSION_EXPIRATION(id)?.getTime(), start + 70 * MINUTE, 'reset by the request, with the current timeout');
    WEB_SET_OPTION(Web_inactive_session_timeout, 5);
    assert.equal(WEB_LEGACY_GET_SESSION_EXPIRATION(id)?.getTime(), start + 15 * MINUTE, 'a lowered one applies at once');

    assert.equal(WEB_LEGACY_GET_SESSION_EXPIRATION('0f8fad5b-d9cb-469f-a165-70867728950e'), null);
    assert.equal(WEB_LEGACY_GET_SESSION_EXPIRATION(''), null);

    WEB_SET_OPTION(Web_scalable_session, 1);
    assert.equal(WEB_LEGACY_GET_SESSION_EXPIRATION(id), null, 'null in scalable mode');
  } finally {
    await engine.stop();
  }
});

test('WEB Get session process count is 1 for a session, 0 for an unknown id, and 2 while a spawned task runs', { timeout: 5_000 }, async () => {
  const engine = makeEngine();
  const gate = deferred();
  try {
    const { WEB_Get_session_process_count, WEB_Get_Current_Session_ID } = use4D(engine);
    const id = await visit(engine);
    assert.equal(WEB_Get_session_process_count(id), 1);
    assert.equal(WEB_Get_session_process_count('0f8fad5b-d9cb-469f-a165-70867728950e'), 0);
    assert.equal(WEB_Get_session_process_count(''), 0);

    let seenInTask = '';
    const lease = await engine.acquire({ sessionId: id, ip: '127.0.0.1' });
    lease.run(() => lease.proc.spawn('export', async () => {
      seenInTask = WEB_Get_Current_Session_ID();
      await gate.promise;
    }));
    lease.release();
    await settle();
    assert.equal(WEB_Get_session_process_count(id), 2, 'the request process and the spawned task');
    assert.equal(seenInTask, id);

    gate.resolve();
    await settle();
    assert.equal(WEB_Get_session_process_count(id), 1, 'the task ended: its process is gone');

    await engine.closeSession(id);
    assert.equal(WEB_Get_session_process_count(id), 0);
  } finally {
    gate.resolve();
    await engine.stop();
  }
});

test('a timeout set by name under a whole minute reads back in minutes rounded up, never as 0 (which written back would restore the 480-minute default)', () => {
  const engine = new SessionEngine();
  const { WEB_GET_OPTION, WEB_SET_OPTION } = use4D(engine);
  engine.setOption('inactiveProcessTimeoutMs', 30_000);
  engine.setOption('inactiveSessionTimeoutMs', 90_000);
  assert.equal(WEB_GET_OPTION(Web_inactive_process_timeout), 1);
  assert.equal(WEB_GET_OPTION(Web_inactive_session_timeout), 2);
  WEB_SET_OPTION(Web_inactive_process_timeout, WEB_GET_OPTION(Web_inactive_process_timeout));
  assert.equal(engine.getOption('inactiveProcessTimeoutMs'), 60_000, 'a read written back stays near what was set');
  engine.setOption('inactiveSessionTimeoutMs', 120_000);
  assert.equal(WEB_GET_OPTION(Web_inactive_session_timeout), 2, 'whole minutes read as they are');
});
