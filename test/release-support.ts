// What the release tests share (test/release-*.test.ts): a client that leaves mid-request, a probe of
// the handlers running in one session, and the two checks every adapter's release rule must pass.
import * as http from 'node:http';
import assert from 'node:assert/strict';
import { ManualClock, SessionEngine, type SessionError, type WebProcess } from '../src/index.js';
import { deferred, request, sessionIdOf, settle, type TestResponse } from './helpers.js';
import { track } from './engine-harness.js';

export type Vars = { n?: number };
export const CLOSE_TIMEOUT_MS = 30_000;

/** Sends a request and hangs up once `leave()` is called (the response, if any, is never read to its end). */
export function requestThenLeave(url: string, path: string, cookie: string): { leave(): void } {
  const req = http.request(`${url}${path}`, { headers: { cookie } });
  req.on('error', () => {});
  req.end();
  return { leave: () => req.destroy() };
}

export interface Probe {
  /** Handlers of the session running now, and the most seen at once. */
  inFlight: number;
  maxInFlight: number;
  readonly started: ReturnType<typeof deferred<void>>;
  /** The server saw the client of /slow leave. */
  readonly left: ReturnType<typeof deferred<void>>;
  /** /slow ends its response when this resolves (or never, for /open). */
  readonly finish: ReturnType<typeof deferred<void>>;
}

export function newProbe(): Probe {
  return { inFlight: 0, maxInFlight: 0, started: deferred(), left: deferred(), finish: deferred() };
}

/**
 * The handler, callback style: `/slow` returns at once and ends its response when `finish` resolves,
 * still using the process then; `/open` writes part of a response and never ends it; others answer now.
 */
export function callbackHandler(probe: Probe): (req: http.IncomingMessage, res: http.ServerResponse, proc: WebProcess<Vars>) => void {
  return (req, res, proc) => {
    probe.inFlight++;
    probe.maxInFlight = Math.max(probe.maxInFlight, probe.inFlight);
    if (req.url === '/slow' || req.url === '/open') {
      res.on('close', () => probe.left.resolve());
      probe.started.resolve();
      if (req.url === '/open') {
        res.write('partial');
        probe.inFlight--;
        return;
      }
      void probe.finish.promise.then(() => {
        proc.vars.n = 99; // still the request's process
        probe.inFlight--;
        res.end('late');
      });
      return;
    }
    probe.inFlight--;
    res.end(String(proc.vars.n ?? 0));
  };
}

export async function withEngine(body: (engine: SessionEngine<Vars>, clock: ManualClock, errors: SessionError[]) => Promise<void>): Promise<void> {
  const clock = new ManualClock();
  // Next requests wait past closeTimeoutMs in some tests: their queue timeout is further off.
  const engine = new SessionEngine<Vars>({ clock, closeTimeoutMs: CLOSE_TIMEOUT_MS, queueTimeoutMs: 10 * CLOSE_TIMEOUT_MS });
  const errors: SessionError[] = [];
  engine.on('error', (error) => errors.push(error));
  try {
    await body(engine, clock, errors);
  } finally {
    clock.advance(CLOSE_TIMEOUT_MS);
    await engine.stop();
  }
}

/**
 * `/slow`'s client leaves before its callback answers: the session's next request waits until the
 * callback has answered (it still uses the process), then sees what it left; never two at once.
 */
export async function expectNextWaitsForTheCallback(url: string, probe: Probe, errors: SessionError[]): Promise<void> {
  const id = sessionIdOf(await request(url));
  const cookie = `4DSID=${id}`;
  const slow = requestThenLeave(url, '/slow', cookie);
  await probe.started.promise;
  const next = track(request(url, { cookie }));
  slow.leave();
  await probe.left.promise;
  await settle(20);
  assert.equal(next.settled, false, 'the next request waits for the callback that still uses the process');
  probe.finish.resolve();
  const answered = await waitFor(next);
  assert.deepEqual([answered.status, answered.body], [200, '99']);
  assert.equal(probe.maxInFlight, 1, 'requests of one process never overlapped');
  assert.deepEqual(errors, []);
}

export async function expectReleasedAtTheDeadline(url: string, engine: SessionEngine<Vars>, clock: ManualClock, errors: SessionError[], probe: Probe): Promise<void> {
  const id = sessionIdOf(await request(url));
  const cookie = `4DSID=${id}`;
  const open = requestThenLeave(url, '/open', cookie);
  await probe.started.promise;
  open.leave();
  await probe.left.promise;
  const next = track(request(url, { cookie }));
  await settle(20);
  assert.equal(next.settled, false, 'held until the deadline');
  clock.advance(CLOSE_TIMEOUT_MS - 1);
  await settle(5);
  assert.equal(next.settled, false, 'not before it');
  clock.advance(1);
  const answered = await waitFor(next);
  assert.equal(answered.status, 200);
  assert.equal(sessionIdOf(answered), id, 'the same session');
  assert.deepEqual(errors.map((e) => [e.code, e.sessionId]), [['ERR_SESSION_DRAIN_TIMEOUT', id]]);
  assert.match(errors[0]!.message, /client left/);
  assert.equal(engine.sessions().find((s) => s.id === id)?.busy, false);
}

/**
 * The session's `/open` request is cut (its client leaves) while its handler, which the adapter sees
 * settle, still runs: the next request of the session waits for it past closeTimeoutMs (requests of one
 * process never overlap), the handler still running then is reported once, and the next request runs as
 * soon as the handler settles (`probe.finish`).
 */
export async function expectHeldUntilTheHandlerSettles(url: string, engine: SessionEngine<Vars>, clock: ManualClock, errors: SessionError[], probe: Probe): Promise<void> {
  const id = sessionIdOf(await request(url));
  const cookie = `4DSID=${id}`;
  const open = requestThenLeave(url, '/open', cookie);
  await probe.started.promise;
  open.leave();
  await probe.left.promise;
  const next = track(request(url, { cookie }));
  await settle(20);
  clock.advance(CLOSE_TIMEOUT_MS - 1);
  await settle(5);
  assert.equal(errors.length, 0, 'nothing said before closeTimeoutMs');
  clock.advance(1);
  await settle(20);
  assert.equal(next.settled, false, 'still held past closeTimeoutMs: the next request does not run beside the handler');
  assert.deepEqual(errors.map((e) => [e.code, e.sessionId]), [['ERR_SESSION_DRAIN_TIMEOUT', id]]);
  assert.match(errors[0]!.message, /still running/);
  assert.equal(engine.sessions().find((s) => s.id === id)?.busy, true);
  probe.finish.resolve();
  const answered = await waitFor(next);
  assert.equal(answered.status, 200);
  assert.equal(sessionIdOf(answered), id, 'the same session');
  assert.equal(errors.length, 1);
}

export async function waitFor(pending: ReturnType<typeof track<TestResponse>>): Promise<TestResponse> {
  for (let i = 0; i < 2_000 && !pending.settled; i++) await settle(1);
  assert.ok(pending.settled, 'answered');
  if (pending.error !== undefined) throw pending.error;
  return pending.value!;
}

/**
 * The session's first request answers, then its handler goes on (until `gate` opens) with its response
 * finished: the next request waits for it past closeTimeoutMs, nothing is reported (nobody left), and it
 * then sees what the handler wrote (vars.n = 1); never two handlers at once.
 */
export async function expectHeldWhileTheHandlerGoesOn(url: string, clock: ManualClock, errors: SessionError[], gate: ReturnType<typeof deferred<void>>, maxInFlight: () => number): Promise<void> {
  const id = sessionIdOf(await request(url));
  const next = track(request(url, { cookie: `4DSID=${id}` }));
  await settle(20);
  clock.advance(CLOSE_TIMEOUT_MS);
  await settle(20);
  assert.equal(next.settled, false, 'the next request waits for the handler, past closeTimeoutMs');
  assert.deepEqual(errors, [], 'no drain timeout: the response had finished');
  gate.resolve();
  const answered = await waitFor(next);
  assert.equal(answered.body, '1');
  assert.equal(maxInFlight(), 1);
}
