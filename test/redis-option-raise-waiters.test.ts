// Room made at run time on the Redis store goes to the requests already waiting for it, whichever node
// they wait on (README's options table: processesPerSession "raised at run time, the room goes to the
// requests already waiting (at once in memory, at their next poll on Redis); a newcomer never overtakes
// them"; maxConcurrentProcesses: "a request of a session waiting only for a place gets the next one freed
// (raised, or given back by a close or an ended task), first come first served"). On Redis the waiting
// request learns of the room at its next poll; a newcomer reaching another node before that poll must
// not take it. Found by the Redis option-change soak (redisopts). The nodes poll every 300 ms so that
// the newcomer comes, 30 ms after the raise, well before the waiting request's next poll.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { ManualClock, type RequestLease } from '../src/index.js';
import { eventually } from './helpers.js';
import { track } from './engine-harness.js';
import { redisForTest } from './redis-support.js';
import { IP, node, type Vars } from './redis-crossing.js';

const POLL_MS = 300;

async function releaseAll(leases: RequestLease<Vars>[], done: () => boolean): Promise<void> {
  // Every request ends, also one admitted late, so the stops have nothing to wait for.
  for (let i = 0; i < 50; i++) {
    for (const lease of leases) lease.release();
    if (done()) return;
    await delay(20);
  }
}

test('redis: processesPerSession raised while a request waits on node x: a newcomer of the session on node y does not take the room ahead of it', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const x = await node(r, clock, { pollIntervalMs: POLL_MS });
  const y = await node(r, clock, { pollIntervalMs: POLL_MS });
  const leases: RequestLease<Vars>[] = [];
  const keep = (p: Promise<RequestLease<Vars>>): Promise<RequestLease<Vars>> => p.then((l) => { leases.push(l); return l; });
  let waiting: { settled: boolean } = { settled: true };
  let newcomer: { settled: boolean } = { settled: true };
  try {
    const running = await keep(x.engine.acquire({ sessionId: undefined, ip: IP }));
    waiting = track(keep(x.engine.acquire({ sessionId: running.sessionId, ip: IP })));
    await delay(POLL_MS + 50); // counted among the session's waiters in Redis, its poll just passed
    assert.equal(waiting.settled, false, 'one process per session: it waits');
    y.engine.setOption('processesPerSession', 2);
    assert.ok(await eventually(() => x.engine.getOption('processesPerSession') === 2, 2_000));
    newcomer = track(keep(y.engine.acquire({ sessionId: running.sessionId, ip: IP })));
    assert.ok(await eventually(() => waiting.settled || newcomer.settled, 3 * POLL_MS));
    await delay(50);
    assert.equal(waiting.settled, true, 'the request already waiting takes the room (at its next poll)');
    assert.equal(newcomer.settled, false, 'the newcomer waits behind it, on whichever node it came');
  } finally {
    await releaseAll(leases, () => waiting.settled && newcomer.settled);
    await Promise.all([x.engine.stop(), y.engine.stop()]);
  }
});

test('redis: maxConcurrentProcesses raised while a request waits on node x for a place: a new session made on node y does not take the place ahead of it', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const x = await node(r, clock, { pollIntervalMs: POLL_MS, processesPerSession: 2 });
  const y = await node(r, clock, { pollIntervalMs: POLL_MS, processesPerSession: 2 });
  const leases: RequestLease<Vars>[] = [];
  const keep = (p: Promise<RequestLease<Vars>>): Promise<RequestLease<Vars>> => p.then((l) => { leases.push(l); return l; });
  let waiting: { settled: boolean } = { settled: true };
  let newcomer: { settled: boolean; error: unknown } = { settled: true, error: undefined };
  try {
    x.engine.setOption('maxConcurrentProcesses', 2);
    assert.ok(await eventually(() => y.engine.getOption('maxConcurrentProcesses') === 2, 2_000));
    const a = await keep(x.engine.acquire({ sessionId: undefined, ip: IP }));
    await keep(y.engine.acquire({ sessionId: undefined, ip: IP }));
    waiting = track(keep(x.engine.acquire({ sessionId: a.sessionId, ip: IP }))); // a second process of a's session: no place
    await delay(POLL_MS + 50);
    assert.equal(waiting.settled, false, 'both places taken: it waits for one');
    x.engine.setOption('maxConcurrentProcesses', 3);
    assert.ok(await eventually(() => y.engine.getOption('maxConcurrentProcesses') === 3, 2_000));
    newcomer = track(keep(y.engine.acquire({ sessionId: undefined, ip: IP })));
    assert.ok(await eventually(() => waiting.settled, 3 * POLL_MS), 'the request that waited for a place gets the one the raise made');
  } finally {
    await releaseAll(leases, () => waiting.settled && newcomer.settled);
    await Promise.all([x.engine.stop(), y.engine.stop()]);
  }
});

test('redis: maxConcurrentProcesses raised by one while requests of two sessions wait for a place on one node: the one that waited first gets it', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const clock = new ManualClock();
  const x = await node(r, clock, { pollIntervalMs: POLL_MS, processesPerSession: 2 });
  const leases: RequestLease<Vars>[] = [];
  const keep = (p: Promise<RequestLease<Vars>>): Promise<RequestLease<Vars>> => p.then((l) => { leases.push(l); return l; });
  let first: { settled: boolean } = { settled: true };
  let second: { settled: boolean } = { settled: true };
  try {
    x.engine.setOption('maxConcurrentProcesses', 2);
    const a = await keep(x.engine.acquire({ sessionId: undefined, ip: IP }));
    const b = await keep(x.engine.acquire({ sessionId: undefined, ip: IP }));
    first = track(keep(x.engine.acquire({ sessionId: a.sessionId, ip: IP }))); // polls at about 300, 600, … ms
    await delay(200);
    second = track(keep(x.engine.acquire({ sessionId: b.sessionId, ip: IP }))); // polls at about 500, 800, … ms
    await delay(150); // at about 350 ms: past the first one's poll, well before the second one's
    assert.equal(first.settled || second.settled, false, 'both wait for a place');
    x.engine.setOption('maxConcurrentProcesses', 3);
    assert.ok(await eventually(() => first.settled || second.settled, 3 * POLL_MS));
    await delay(50);
    assert.deepEqual([first.settled, second.settled], [true, false], 'the place goes to the request that waited first');
  } finally {
    await releaseAll(leases, () => first.settled && second.settled);
    await x.engine.stop();
  }
});
