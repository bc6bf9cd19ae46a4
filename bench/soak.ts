// Soak: does memory stay flat under a long, realistic mix? `npm run soak` (minutes, not in CI).
//
//   node --import tsx bench/soak.ts [--minutes 10] [--warmup 2] [--sample 10] [--concurrency 8] [--rate 400]
//                                   [--max-sessions 2000] [--timeout 14]
//
// A server child (createServer + SessionEngine, run with --expose-gc) serves loopback traffic from this
// process: churn (newcomers that make a few requests and never come back: their sessions are evicted at
// the cap or time out) and returning visitors (a bounded pool of browsers that log in, restoring state
// their onClose saved, work on selections and record locks, and sometimes log out). Every `--sample`
// seconds the child forces GC and reports RSS and heap; after the warm-up the samples must stay within
// 10 % of the first one after it. Exit code 1 when they do not (or when the run itself went wrong).
// Load is bounded: `--concurrency` connections, at most `--rate` requests per second, 127.0.0.1 only.
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildLibraryForServers, loadCore, loadNodeAdapter } from './library.js';

interface Sample {
  readonly t: number;
  readonly rss: number;
  readonly heapUsed: number;
  readonly sessions: number;
  readonly created: number;
  readonly closed: Record<string, number>;
  readonly hookErrors: number;
  readonly served: number;
}

type ToParent = { type: 'ready'; port: number } | { type: 'sample'; sample: Sample };

// ---- the server child --------------------------------------------------------------------------------

async function serverMain(sampleSeconds: number, maxSessions: number, timeoutSeconds: number): Promise<void> {
  const { SessionEngine } = await loadCore();
  const { createServer } = await loadNodeAdapter();
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('the soak server needs --expose-gc');
  const collect = gc;

  interface Vars { user?: string; cart: number[]; page: number }
  /** What onClose saves per user: a bounded population, like a preferences table. */
  const saved = new Map<string, { cart: number[]; page: number }>();
  const engine = new SessionEngine<Vars>({
    maxSessions, maxConcurrentProcesses: maxSessions + 100,
    inactiveProcessTimeoutMs: timeoutSeconds * 1_000, closeTimeoutMs: 5_000,
    init: () => ({ cart: [], page: 0 }),
    onClose: async (proc) => {
      await new Promise((resolve) => setImmediate(resolve)); // a storage round trip
      if (proc.vars.user !== undefined) saved.set(proc.vars.user, { cart: proc.vars.cart.slice(-20), page: proc.vars.page });
    },
  });
  let hookErrors = 0;
  engine.on('error', () => { hookErrors++; });
  let served = 0;
  const products = Array.from({ length: 3_000 }, (_, i) => i);

  const server = createServer(engine, async (req, res, proc) => {
    served++;
    const url = new URL(req.url ?? '/', 'http://soak');
    switch (url.pathname) {
      case '/login': {
        const user = url.searchParams.get('u') ?? 'anon';
        proc.vars.user = user;
        const back = saved.get(user);
        if (back !== undefined) { proc.vars.cart = back.cart.slice(); proc.vars.page = back.page; }
        await engine.regenerate(proc.sessionId);
        break;
      }
      case '/search': {
        const from = Number(url.searchParams.get('q') ?? 0) % 2_000;
        proc.selections.set('products', products.slice(from, from + 200));
        proc.vars.page = 0;
        break;
      }
      case '/edit': {
        const key = Number(url.searchParams.get('id') ?? 0) % 500;
        if (await proc.locks.tryLock('products', key)) {
          await new Promise((resolve) => setImmediate(resolve));
          await proc.locks.unlock('products', key);
        }
        break;
      }
      case '/cart':
        proc.vars.cart.push(Number(url.searchParams.get('id') ?? 0));
        if (proc.vars.cart.length > 50) proc.vars.cart.shift();
        break;
      case '/logout':
        await engine.closeSession(proc.sessionId); // from inside: the hook saves, the context is reset
        res.end('bye');
        return;
      default:
        proc.vars.page++;
    }
    res.end(`${proc.vars.page} ${proc.vars.cart.length}`);
  });
  server.keepAliveTimeout = 30_000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const startedAt = Date.now();
  // The parent may go away between a sample's start and its send: a lost sample is fine, a crash is not.
  const send = (message: ToParent): void => { if (process.connected) process.send?.(message, undefined, undefined, () => {}); };
  send({ type: 'ready', port: (server.address() as AddressInfo).port });

  const sample = async (): Promise<void> => {
    for (let i = 0; i < 4; i++) {
      collect();
      await new Promise((resolve) => setImmediate(resolve));
    }
    const memory = process.memoryUsage();
    const stats = engine.stats();
    send({ type: 'sample', sample: {
      t: (Date.now() - startedAt) / 1000, rss: memory.rss, heapUsed: memory.heapUsed, sessions: stats.sessions,
      created: stats.created, closed: { ...stats.closed }, hookErrors, served,
    } });
  };
  setInterval(() => { void sample(); }, sampleSeconds * 1000);
  process.on('disconnect', () => process.exit(0));
}

// ---- the load, in the parent ---------------------------------------------------------------------------

interface Options { minutes: number; warmup: number; sample: number; concurrency: number; rate: number; maxSessions: number; timeout: number }

async function parentMain(options: Options): Promise<number> {
  buildLibraryForServers();
  const self = fileURLToPath(import.meta.url);
  const child: ChildProcess = fork(self, ['--server', '--sample', String(options.sample), '--max-sessions', String(options.maxSessions), '--timeout', String(options.timeout)], {
    execArgv: ['--expose-gc', '--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const samples: Sample[] = [];
  const port = await new Promise<number>((resolve, reject) => {
    child.on('message', (message: ToParent) => {
      if (message.type === 'ready') resolve(message.port);
      else samples.push(message.sample);
    });
    child.once('exit', (code) => reject(new Error(`soak server exited early (${code})`)));
  });

  const agent = new http.Agent({ keepAlive: true, maxSockets: options.concurrency });
  let failed = 0;
  const statuses = new Map<number, number>();
  const get = (path: string, cookie: string | undefined): Promise<string | undefined> => new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent, headers: cookie === undefined ? {} : { cookie } }, (res) => {
      statuses.set(res.statusCode ?? 0, (statuses.get(res.statusCode ?? 0) ?? 0) + 1);
      res.resume();
      res.on('end', () => resolve(res.headers['set-cookie']?.[0]?.split(';')[0]));
    });
    req.on('error', () => { failed++; resolve(undefined); });
  });

  // Returning visitors: a bounded pool of browsers, each a cookie (or none yet) and a user name.
  const POOL = 3_000;
  const browsers = Array.from({ length: POOL }, (_, i) => ({ user: `user${i}`, cookie: undefined as string | undefined, busy: false }));
  let next = 0;
  let tokens = 0;
  const refill = setInterval(() => { tokens = Math.min(options.rate, tokens + options.rate / 10); }, 100);
  const take = async (): Promise<void> => {
    while (tokens < 1) await new Promise((resolve) => setTimeout(resolve, 5));
    tokens--;
  };
  const endAt = Date.now() + options.minutes * 60_000;
  let requests = 0;

  const worker = async (w: number): Promise<void> => {
    let n = w;
    while (Date.now() < endAt) {
      n++;
      if (Math.random() < 0.3) {
        // Churn: a newcomer makes 1–3 requests and never comes back.
        let cookie: string | undefined;
        const visits = 1 + Math.floor(Math.random() * 3);
        for (let k = 0; k < visits; k++) {
          await take();
          cookie = (await get(k === 0 ? '/' : `/search?q=${n}`, cookie)) ?? cookie;
          requests++;
        }
        continue;
      }
      const browser = browsers[next++ % POOL]!;
      if (browser.busy) continue;
      browser.busy = true;
      const steps = browser.cookie === undefined ? [`/login?u=${browser.user}`, `/search?q=${n}`, `/cart?id=${n % 3_000}`] : [`/cart?id=${n % 3_000}`, `/edit?id=${n}`, '/'];
      if (Math.random() < 0.04) steps.push('/logout');
      for (const step of steps) {
        await take();
        const set = await get(step, browser.cookie);
        requests++;
        browser.cookie = step === '/logout' ? undefined : set ?? browser.cookie;
      }
      browser.busy = false;
    }
  };

  const start = Date.now();
  console.log(`soak: ${options.minutes} min (warm-up ${options.warmup} min), GC'd sample every ${options.sample} s, ${options.concurrency} connections, ≤ ${options.rate} req/s, 127.0.0.1`);
  console.log(`node ${process.version}, ${os.cpus().length} CPU(s), ${Math.round(os.totalmem() / 2 ** 30)} GiB`);
  console.log('   t(s)   rss(MB)  heap(MB)  sessions   created   closed(evicted/timeout/closed)  served');
  let printed = 0;
  const printer = setInterval(() => {
    for (; printed < samples.length; printed++) {
      const s = samples[printed]!;
      console.log(`${s.t.toFixed(0).padStart(7)} ${(s.rss / 2 ** 20).toFixed(1).padStart(9)} ${(s.heapUsed / 2 ** 20).toFixed(1).padStart(9)} ${String(s.sessions).padStart(9)} ${String(s.created).padStart(9)}   ${`${s.closed.evicted}/${s.closed.timeout}/${s.closed.closed}`.padStart(28)}  ${String(s.served).padStart(7)}`);
    }
  }, 1_000);
  await Promise.all(Array.from({ length: options.concurrency }, (_, w) => worker(w)));
  // Samples taken once the load has stopped describe an emptying server: they are not part of the verdict.
  clearInterval(refill);
  clearInterval(printer);
  for (; printed < samples.length; printed++) {
    const s = samples[printed]!;
    console.log(`${s.t.toFixed(0).padStart(7)} ${(s.rss / 2 ** 20).toFixed(1).padStart(9)} ${(s.heapUsed / 2 ** 20).toFixed(1).padStart(9)} ${String(s.sessions).padStart(9)} ${String(s.created).padStart(9)}   ${`${s.closed.evicted}/${s.closed.timeout}/${s.closed.closed}`.padStart(28)}  ${String(s.served).padStart(7)}`);
  }
  agent.destroy();
  child.disconnect();

  const elapsed = (Date.now() - start) / 1000;
  console.log(`\n${requests} requests in ${elapsed.toFixed(0)} s (${(requests / elapsed).toFixed(0)} req/s); statuses ${JSON.stringify(Object.fromEntries(statuses))}; connection errors ${failed}`);
  const after = samples.filter((s) => s.t > options.warmup * 60);
  if (after.length < 2) {
    console.log('verdict: not enough samples after the warm-up (run longer, or sample more often)');
    return 1;
  }
  const verdict = (name: string, pick: (s: Sample) => number): boolean => {
    const ref = pick(after[0]!);
    const values = after.map(pick);
    const low = Math.min(...values);
    const high = Math.max(...values);
    const spread = Math.max(Math.abs(high - ref), Math.abs(ref - low)) / ref;
    const ok = spread <= 0.10;
    console.log(`${name}: after warm-up ${(ref / 2 ** 20).toFixed(1)} MB at t=${after[0]!.t.toFixed(0)} s, range ${(low / 2 ** 20).toFixed(1)}–${(high / 2 ** 20).toFixed(1)} MB, last ${(values.at(-1)! / 2 ** 20).toFixed(1)} MB: ${(spread * 100).toFixed(1)} % from the reference → ${ok ? 'within 10 %' : 'OUTSIDE 10 %'}`);
    return ok;
  };
  const rssOk = verdict('RSS after GC ', (s) => s.rss);
  const heapOk = verdict('heap after GC', (s) => s.heapUsed);
  const last = samples.at(-1)!;
  const sane = last.hookErrors === 0 && (statuses.get(500) ?? 0) === 0 && failed === 0;
  const unexercised = ['evicted', 'timeout', 'closed'].filter((reason) => (last.closed[reason] ?? 0) === 0);
  console.log(`closes: ${JSON.stringify(last.closed)}; hook errors ${last.hookErrors}; ${sane ? 'no error, no 500, no failed connection' : 'RUN PROBLEM: errors, 500s or failed connections'}`);
  if (unexercised.length > 0) console.log(`note: no close with reason ${unexercised.join(', ')} (the live set stayed ${unexercised.includes('evicted') ? 'under the cap: raise --rate or lower --max-sessions' : 'at the cap: lower --timeout'})`);
  return rssOk && heapOk && sane ? 0 : 1;
}

const { values } = parseArgs({
  options: {
    server: { type: 'boolean', default: false },
    minutes: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    sample: { type: 'string', default: '10' },
    concurrency: { type: 'string', default: '8' },
    rate: { type: 'string', default: '400' },
    // At the default rate about 150 sessions/s are created: with a 14 s timeout the live set hovers around
    // the cap, so sessions are both evicted and timed out while memory should stay flat.
    'max-sessions': { type: 'string', default: '2000' },
    timeout: { type: 'string', default: '14' },
  },
});
if (values.server) {
  await serverMain(Number(values.sample), Number(values['max-sessions']), Number(values.timeout));
} else {
  const minutes = Number(values.minutes);
  process.exitCode = await parentMain({
    minutes, warmup: Math.min(Number(values.warmup), minutes / 2), sample: Number(values.sample),
    concurrency: Number(values.concurrency), rate: Number(values.rate), maxSessions: Number(values['max-sessions']), timeout: Number(values.timeout),
  });
}
