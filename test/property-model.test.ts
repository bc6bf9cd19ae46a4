// Model-based property test on the memory store: random interleavings of requests, slow requests,
// spawns, locks, closes from outside and inside, clock jumps, option changes and stop(), checked against
// test/model.ts after every step (invariants 1–7 of DESIGN.md §1; the runner is test/property-support.ts,
// shared with the Redis store's test/property-redis.test.ts). PROPERTY_RUNS / PROPERTY_SEED override the
// profile; a failure prints the seed and the shrunk sequence of operations, so it replays exactly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ManualClock, SessionEngine, type SessionEngineOptions } from '../src/index.js';
import { settle } from './helpers.js';
import type { Vars } from './model.js';
import { propertyProfile, runScenario } from './property-support.js';
import { scenarioArb, type Harness, type Op } from './property-scenario.js';

/** The memory store decides on one event loop: a few turns of it show every consequence of a step. */
async function memoryEngine(options: SessionEngineOptions<Vars>): Promise<Harness> {
  const clock = new ManualClock();
  const engine = new SessionEngine<Vars>({ ...options, clock });
  const openIds = (): Set<string> => new Set(engine.sessions().map((s) => s.id));
  return {
    engine,
    clock,
    observer: {
      timeoutLatenessMs: 0,
      async settle(world) {
        // Until no answer is left to take in: a release can hand a process on to the next waiting request
        // (processesPerSession 2 makes such chains), whose answer comes a turn later.
        for (let turn = 0; turn < 20; turn++) {
          await settle(1);
          const before = world.pendings.length;
          world.absorb();
          if (world.pendings.length === before) break;
        }
        await settle(1);
        world.forgetClosed(openIds());
      },
      async until(done) {
        // A few turns: a logout from a session with two processes hooks both before it returns.
        for (let turn = 0; turn < 20 && !done(); turn++) await settle(1);
        return done();
      },
      openIds: async () => openIds(),
      bounds: async () => ({ sessions: engine.stats().sessions, longestQueue: Math.max(0, ...engine.sessions().map((s) => s.queuedRequests)) }),
      checkClosed: async () => {},
      async finish(round, afterTurn, stopped) {
        for (let turn = 0; turn < 20 && !stopped(); turn++) {
          round();
          await settle(1);
          afterTurn();
        }
      },
      async checkEmpty() {
        assert.equal(engine.stats().sessions, 0);
        assert.equal(engine.lockManager instanceof Object && (engine.lockManager as unknown as { size: number }).size, 0, 'invariant 3: no lock left');
      },
    },
    dispose: async () => {},
  };
}

export function runScenarioInMemory(ops: Op[]): Promise<void> {
  return runScenario(ops, memoryEngine);
}

// CI profile: 10,000 runs; a local `npm test` runs 1,000 (quick feedback); `npm run test:long` 100,000.
const { runs, seed } = propertyProfile('PROPERTY', 1_000, 10_000);

test(`random interleavings keep invariants 1–7 (${runs} runs${seed === undefined ? '' : `, seed ${seed}`})`, { timeout: 600_000 }, async () => {
  await fc.assert(fc.asyncProperty(scenarioArb, runScenarioInMemory), { numRuns: runs, seed, endOnFailure: false, verbose: 1 });
});
