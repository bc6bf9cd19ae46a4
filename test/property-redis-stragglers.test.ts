// The stragglers property on the Redis store: two engines (nodes) on one prefix, one ManualClock, random
// interleavings of requests and tasks that hold and resume (record locks, vars), logouts, closes from
// either node while work runs, slow inits, the clock past closeTimeoutMs (the drain gives up: a
// straggler) and past the session timeout, a node's stop(), and pub/sub messages lost ('c', 'r', 'x').
// Checked at the end, once everything is released and every node stopped (test/property-stragglers-run.ts):
// one hook per process cluster-wide (invariant 1) seeing the vars the last request left, or what work
// still running at the close wrote, or {} when no request of it ended (2); no handler step of a request
// or task runs in the old context (vars, record locks) once its node knows the close ended (its
// closeSession resolved, it ran the close, or it heard 'x') (3); a logout's caller goes on torn down; no
// record lock nor session key left in Redis; no two requests of a process overlap (7); stop() resolves
// within its bound and no step hangs.
// PROPERTY_REDIS_STRAGGLERS_RUNS / PROPERTY_REDIS_STRAGGLERS_SEED override the profile (40 runs locally,
// 100 under CI=true); PROPERTY_REDIS_STRAGGLERS_LOG=1 prints each run's operations. A failure prints
// the seed and the shrunk sequence. Needs Redis at REDIS_URL: skipped loudly without it, failed under CI=true.
import { test } from 'node:test';
import fc from 'fast-check';
import { propertyProfile } from './property-support.js';
import { redisForTest } from './redis-support.js';
import { scenarioArb, type Op } from './property-stragglers-support.js';
import { coverage, runStragglers } from './property-stragglers-run.js';

const { runs, seed } = propertyProfile('PROPERTY_REDIS_STRAGGLERS', 40, 100);
const verbose = process.env.PROPERTY_REDIS_STRAGGLERS_LOG === '1';

test(`two nodes: stragglers, logouts, lost messages and stop() keep one hook per process, no old context after a close, no lock left (${runs} runs${seed === undefined ? '' : `, seed ${seed}`})`, { timeout: 900_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  let run = 0;
  await fc.assert(fc.asyncProperty(scenarioArb, async (ops: Op[]) => {
    run++;
    await runStragglers(r, `${r.prefix}${run}:`, ops, verbose ? (line) => console.log(`[run ${run}] ${line}`) : undefined);
  }), { numRuns: runs, seed, endOnFailure: false, verbose: 1 });
  t.diagnostic(`met: ${JSON.stringify(coverage)}`);
});

// PROPERTY_REDIS_STRAGGLERS_OPS='[…]' (a counterexample as printed): replays that one sequence, logged.
const replay = process.env.PROPERTY_REDIS_STRAGGLERS_OPS;
if (replay !== undefined) {
  test('replay of PROPERTY_REDIS_STRAGGLERS_OPS', { timeout: 120_000 }, async (t) => {
    const r = await redisForTest(t);
    if (r === undefined) return;
    await runStragglers(r, `${r.prefix}replay:`, JSON.parse(replay) as Op[], (line) => console.log(line));
  });
}
