// After the client left, the release waits for the application's end() or destroy() of the response
// (where the adapter cannot see the handler settle): that call must be seen whatever reference the
// application called it through, not only `res.end` read after the client left. `res.end(await work())`
// reads `res.end` before the await (Express); a callback-style node:http handler may bind it
// (`res.end.bind(res)`) before its callback runs. Before, such an end went unseen: the session stayed
// busy until closeTimeoutMs, then was released with a false ERR_SESSION_DRAIN_TIMEOUT. The next request
// of the session must be served as soon as the application has ended, before the clock moves; moved
// past closeTimeoutMs afterwards, nothing is reported.
import { test } from 'node:test';
import * as http from 'node:http';
import express from 'express';
import express4 from 'express4';
import type { WebProcess } from '../src/index.js';
import { sessions } from '../src/adapters/express/index.js';
import { listen } from './contract/app.js';
import assert from 'node:assert/strict';
import { request, settle, startServer } from './helpers.js';
import { CLOSE_TIMEOUT_MS, expectNextWaitsForTheCallback, newProbe, withEngine, type Probe, type Vars } from './release-support.js';

/** `/slow` (once started) waits for `probe.finish`, then still uses the process: what it answers with. */
async function slowWork(probe: Probe, proc: WebProcess<Vars>): Promise<string> {
  await probe.finish.promise;
  proc.vars.n = 99; // still the request's process
  probe.inFlight--;
  return 'late';
}

function enter(probe: Probe, res: http.ServerResponse): void {
  probe.inFlight++;
  probe.maxInFlight = Math.max(probe.maxInFlight, probe.inFlight);
  res.on('close', () => probe.left.resolve());
  probe.started.resolve();
}

/** Released at the application's end: nothing is left to report when closeTimeoutMs has passed. */
async function expectNothingReportedLater(clock: { advance(ms: number): void }, errors: unknown[]): Promise<void> {
  clock.advance(CLOSE_TIMEOUT_MS);
  await settle(20);
  assert.deepEqual(errors, [], 'no ERR_SESSION_DRAIN_TIMEOUT: the application had ended the response');
}

type ExpressModule = typeof express | typeof express4;

/** Where the routes and `sessions()` sit: one app, a sub-app that has sessions() mounted in an app that has not, or the reverse. */
const LAYOUTS = ['', 'in a mounted sub-app with sessions(), ', 'in a sub-app mounted in an app with sessions(), '] as const;

/** An Express app (5 or 4) whose `/slow` is `res.end(await work())`, laid out as `layout` says. */
function expressApp(framework: ExpressModule, engine: Parameters<typeof sessions>[0], probe: Probe, layout: typeof LAYOUTS[number]): http.RequestListener {
  const create = framework as typeof express;
  const app = create();
  if (layout !== LAYOUTS[2]) app.use(sessions(engine));
  app.get('/slow', async (req, res) => {
    enter(probe, res);
    // `res.end` is read before the await, while the client is still there.
    res.end(await slowWork(probe, req.proc as WebProcess<Vars>));
  });
  app.use((req, res) => {
    res.end(String((req.proc as WebProcess<Vars>).vars.n ?? 0));
  });
  if (layout === LAYOUTS[0]) return app as unknown as http.RequestListener;
  const parent = create();
  if (layout === LAYOUTS[2]) parent.use(sessions(engine));
  parent.use('/', app);
  return parent as unknown as http.RequestListener;
}

for (const [name, framework] of [['Express 5', express], ['Express 4', express4]] as const) {
  for (const layout of LAYOUTS) {
    test(`${name}, ${layout}res.end(await work()) whose client leaves during the await: released when it ends the response, the next request served at once, nothing reported`, async () => {
      await withEngine(async (engine, clock, errors) => {
        const probe = newProbe();
        const server = await listen(http.createServer(expressApp(framework, engine, probe, layout)));
        try {
          await expectNextWaitsForTheCallback(server.url, probe, errors);
          await expectNothingReportedLater(clock, errors);
        } finally {
          probe.finish.resolve();
          await server.close();
        }
      });
    });
  }
}

const CAPTURED = {
  'res.end.bind(res)': (res: http.ServerResponse): (() => void) => { const end = res.end.bind(res); return () => end('late'); },
  'const { end } = res; end.call(res)': (res: http.ServerResponse): (() => void) => { const { end } = res; return () => end.call(res, 'late', 'utf8'); },
  'res.destroy.bind(res)': (res: http.ServerResponse): (() => void) => { const destroy = res.destroy.bind(res); return () => destroy(); },
} as const;

for (const [how, capture] of Object.entries(CAPTURED)) {
  test(`node:http, a callback-style handler that took ${how} before its client left: released when it calls it, the next request served at once, nothing reported`, async () => {
    await withEngine(async (engine, clock, errors) => {
      const probe = newProbe();
      const server = await startServer(engine, (req: http.IncomingMessage, res: http.ServerResponse, proc: WebProcess<Vars>) => {
        if (req.url !== '/slow') {
          res.end(String(proc.vars.n ?? 0));
          return;
        }
        enter(probe, res);
        const finish = capture(res);
        void slowWork(probe, proc).then(finish);
      });
      try {
        await expectNextWaitsForTheCallback(server.url, probe, errors);
        await expectNothingReportedLater(clock, errors);
      } finally {
        probe.finish.resolve();
        await server.close();
      }
    });
  });
}

test('Express, sessions() only in a sub-app and the request falls back to the parent, whose route ends through res.end read before its await: the next request is served once it ends', { timeout: 20_000 }, async () => {
  await withEngine(async (engine, clock, errors) => {
    const probe = newProbe();
    const sub = express();
    sub.use(sessions(engine));
    const parent = express();
    parent.use(sub);
    parent.get('/slow', async (req, res) => {
      enter(probe, res);
      const end = res.end; // what res.end(await work()) reads
      (end as (this: typeof res, chunk: string) => void).call(res, await slowWork(probe, req.proc as WebProcess<Vars>));
    });
    parent.use((req, res) => { res.end(String((req.proc as WebProcess<Vars>).vars.n ?? 0)); });
    const server = await listen(http.createServer(parent as unknown as http.RequestListener));
    try {
      await expectNextWaitsForTheCallback(server.url, probe, errors);
      await expectNothingReportedLater(clock, errors);
    } finally {
      probe.finish.resolve();
      await server.close();
    }
  });
});

/** Counts the calls of http.ServerResponse.prototype.end made while `run` runs, as an agent patching it late would. */
async function endCallsDuring(run: () => Promise<unknown>): Promise<number> {
  const original = http.ServerResponse.prototype.end;
  let calls = 0;
  http.ServerResponse.prototype.end = function (this: http.ServerResponse, ...args: unknown[]) {
    calls++;
    return (original as (...a: unknown[]) => http.ServerResponse).apply(this, args);
  } as typeof original;
  try {
    await run();
  } finally {
    http.ServerResponse.prototype.end = original;
  }
  return calls;
}

test('an end patched on http.ServerResponse.prototype after the adapters hooked theirs (an APM agent started late, a spy) is still the one called', { timeout: 20_000 }, async () => {
  await withEngine(async (engine) => {
    const node = await startServer(engine, (_req, res) => { res.end('x'); });
    const app = express();
    app.use(sessions(engine));
    app.get('/', (_req, res) => { res.end('x'); });
    const onExpress = await listen(http.createServer(app));
    try {
      await request(onExpress.url); // Express hooks at its first request
      assert.equal(await endCallsDuring(() => request(node.url)), 1, 'node:http');
      assert.equal(await endCallsDuring(() => request(onExpress.url)), 1, 'Express');
    } finally {
      await node.close();
      await onExpress.close();
    }
  });
});
