// A node that joins a cluster whose options were changed at run time takes them once its store has
// started, and its first requests wait for that (README, "Running on more than one machine"). The HTTP
// binding reads the cookie's name and trustProxy when the request arrives: a request that came during
// the start must be read with the cluster's options, not the constructor's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { ManualClock, SessionEngine, type WebProcess } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { eventually, request, sessionCookie, startServer, type TestServer } from './helpers.js';
import { redisForTest } from './redis-support.js';

type Vars = { n?: number };

const count = (_req: unknown, res: ServerResponse, proc: WebProcess<Vars>): void => {
  proc.vars.n = (proc.vars.n ?? 0) + 1;
  res.end(String(proc.vars.n));
};

test('redis: a request reaching a joining node while its store starts is read with the cluster\'s cookieName (its session goes on, not a new one)', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const a = new SessionEngine<Vars>({ clock, store: createRedisStore({ redis: await r.client(), prefix: r.prefix }) });
  const servers: TestServer[] = [await startServer(a, count)];
  let b: SessionEngine<Vars> | undefined;
  try {
    a.setOption('cookieName', 'SID2');
    const first = await request(servers[0]!.url);
    const cookie = sessionCookie(first, 'SID2');
    assert.ok(cookie !== undefined, 'a set the cookie under the new name');
    assert.ok(await eventually(async () => (await r.redis.hget(`${r.prefix}opts`, 'cookieName')) === '"SID2"', 3_000), 'the cluster holds the option');
    // Node b joins; its start's read of the cluster's options is held until the request has arrived.
    const client = await r.client();
    const hgetall = client.hgetall.bind(client) as (...args: unknown[]) => Promise<unknown>;
    let letGo!: () => void;
    const held = new Promise<void>((resolve) => { letGo = resolve; });
    (client as unknown as { hgetall: (...args: unknown[]) => Promise<unknown> }).hgetall = async (...args) => { await held; return hgetall(...args); };
    b = new SessionEngine<Vars>({ clock, store: createRedisStore({ redis: client, prefix: r.prefix }) });
    servers.push(await startServer(b, count));
    // The binding reads the cookie's name when the request arrives (its first read of b's options).
    const joining = b;
    let read = false;
    const getOption = joining.getOption.bind(joining);
    joining.getOption = ((name: Parameters<typeof getOption>[0]) => {
      if (name === 'cookieName') read = true;
      return getOption(name);
    }) as typeof getOption;
    const answer = request(servers[1]!.url, { cookie });
    assert.ok(await eventually(() => read, 5_000), 'the request arrived and was read during the start');
    letGo();
    const got = await answer;
    assert.equal(b.getOption('cookieName'), 'SID2', 'b took the cluster\'s option');
    assert.equal(got.status, 200);
    assert.equal(got.body, '2', 'the request ran in its session (its second request), not in a new one');
  } finally {
    await Promise.all(servers.map((s) => s.close()));
    clock.advance(60_000);
    await Promise.all([a.stop(), b?.stop()]);
  }
});
