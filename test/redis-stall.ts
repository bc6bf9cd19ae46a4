// Two nodes on one Redis, one of which stalls: its heartbeats are held, so another node's sweep takes it
// for dead while it is in fact alive (test/redis-taken-for-dead*.test.ts). The stall is made, not waited
// for: the held beats are sent once `wake()` is called.
import type { TestContext } from 'node:test';
import { ManualClock, SessionEngine, type SessionEngineOptions, type SessionError } from '../src/index.js';
import { createRedisStore } from '../src/redis/index.js';
import { eventually } from './helpers.js';
import { redisForTest, type RedisForTest } from './redis-support.js';
import { stopWithClocks, wrapScript, type Vars } from './redis-crossing.js';

export const LEASE_MS = 200;
const SWEEP_MS = 1_000;

export interface StallableNode {
  readonly engine: SessionEngine<Vars>;
  readonly client: Awaited<ReturnType<RedisForTest['client']>>;
  readonly clock: ManualClock;
  readonly hooked: string[];
  readonly errors: SessionError[];
  /** Its heartbeats wait (sent to Redis only once `wake()` is called): the node beats no more. */
  stall(): void;
  wake(): void;
}

/** What a node of `withTwoNodes` is made with beyond the defaults. */
export interface StallableSettings {
  readonly init?: SessionEngineOptions<Vars>['init'];
}

async function stallableNode(r: RedisForTest, settings: StallableSettings = {}): Promise<StallableNode> {
  const client = await r.client();
  const clock = new ManualClock();
  const hooked: string[] = [];
  const engine = new SessionEngine<Vars>({
    clock, closeTimeoutMs: 5_000, processesPerSession: 2, onClose: (proc) => { hooked.push(proc.processId); },
    ...(settings.init === undefined ? {} : { init: settings.init }),
    store: createRedisStore({ redis: client, prefix: r.prefix, nodeLeaseMs: LEASE_MS, sweepIntervalMs: SWEEP_MS, pollIntervalMs: 5, onStop: 'auto' }),
  });
  const errors: SessionError[] = [];
  engine.on('error', (error) => errors.push(error));
  let stalled: Promise<void> | undefined;
  let wake = (): void => {};
  wrapScript(client, 'lwsHeartbeat', (beat) => async (...args) => {
    if (stalled !== undefined) await stalled;
    return beat(...args);
  });
  return {
    engine, client, clock, hooked, errors,
    stall: () => { stalled ??= new Promise<void>((resolve) => { wake = () => { stalled = undefined; resolve(); }; }); },
    wake: () => wake(),
  };
}

export const realDelay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** y's sweeps run (on its clock, armed once its node has started) until `done` holds, or 5 s of real time. */
export function sweepUntil(y: StallableNode, done: () => Promise<boolean> | boolean): Promise<boolean> {
  return eventually(async () => { y.clock.advance(SWEEP_MS); return done(); }, 5_000);
}

/** Stops both nodes (awake), their clocks moving on meanwhile. */
async function stopBoth(x: StallableNode, y: StallableNode): Promise<void> {
  x.wake();
  y.wake();
  await stopWithClocks([x, y]);
}

/** Two stallable nodes on one Redis for `body`: the leases it lists are released and both nodes stopped after it, whatever it did. */
export async function withTwoNodes(
  t: TestContext,
  body: (nodes: { r: RedisForTest; x: StallableNode; y: StallableNode; leases: { release(): void }[] }) => Promise<void>,
  settings: { readonly x?: StallableSettings; readonly y?: StallableSettings } = {},
): Promise<void> {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const x = await stallableNode(r, settings.x);
  const y = await stallableNode(r, settings.y);
  const leases: { release(): void }[] = [];
  try {
    await body({ r, x, y, leases });
  } finally {
    for (const lease of leases) lease.release();
    await stopBoth(x, y);
  }
}
