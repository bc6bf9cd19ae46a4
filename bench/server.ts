// The server under load, in its own process so it can be pinned to one core apart from the load
// generator: `taskset -c 0 node --import tsx bench/server.ts <bare|control|ours> <returning|churn>`.
// It listens on 127.0.0.1, port 0, reports the port over IPC, answers snapshot requests, and exits
// when asked or when the parent goes away (bench/child.ts).

import { AsyncLocalStorage } from 'node:async_hooks';
import * as http from 'node:http';
import type { SessionEngine as Engine } from '../src/index.js';
import { serveOverIpc } from './child.js';
import { loadCore, loadNodeAdapter } from './library.js';
import { CHURN_MAX_SESSIONS, isServerKind, isWorkloadName, RETURNING_SESSIONS, type ServerKind, type WorkloadName } from './protocol.js';

const [kind, workload] = process.argv.slice(2);
if (!isServerKind(kind) || kind === 'peer' || !isWorkloadName(workload) || process.send === undefined) {
  console.error('usage: node --import tsx bench/server.ts <bare|control|ours> <returning|churn> (started by bench/http.ts, with an IPC channel)');
  process.exit(2);
}

const { SessionEngine } = await loadCore();
const { createServer } = await loadNodeAdapter();

let handled = 0;
let hooks = 0;
let errors = 0;

// Every server runs the same application code (read a counter, write it back, echo it); only where the
// counter lives differs. So the ratio measures what the session layer costs, not different work.
const bareHits = { hits: 0 };

function buildServer(kind: ServerKind, workload: WorkloadName): { server: http.Server; engine: Engine<{ hits: number }> | undefined } {
  if (kind === 'bare') {
    const server = http.createServer((req, res) => {
      handled++;
      bareHits.hits++;
      res.end(String(bareHits.hits));
    });
    return { server, engine: undefined };
  }
  if (kind === 'control') {
    // Each request in an async context of its own, as ours runs each handler, and nothing else of ours.
    const context = new AsyncLocalStorage<object>();
    const server = http.createServer((req, res) => {
      context.run({}, () => {
        handled++;
        bareHits.hits++;
        res.end(String(bareHits.hits));
      });
    });
    return { server, engine: undefined };
  }
  // Returning visitors: caps at the session count so nothing is ever evicted (checked by the parent).
  // Churn: the default process cap (100) with maxSessions 100, so every newcomer evicts one idle session.
  const caps = workload === 'returning'
    ? { maxSessions: RETURNING_SESSIONS, maxConcurrentProcesses: RETURNING_SESSIONS }
    : { maxSessions: CHURN_MAX_SESSIONS };
  const engine = new SessionEngine<{ hits: number }>({
    ...caps,
    init: () => ({ hits: 0 }),
    // A cheap synchronous hook: the figure is the cost of the close pipeline, not of the hook's work.
    onClose: () => {
      hooks++;
    },
  });
  // A listener, so an error is counted instead of becoming a process warning per request.
  engine.on('error', () => {
    errors++;
  });
  const server = createServer(engine, (req, res, proc) => {
    handled++;
    proc.vars.hits++;
    res.end(String(proc.vars.hits));
  });
  return { server, engine };
}

const { server, engine } = buildServer(kind, workload);
serveOverIpc(server, () => ({ handled, hooks, errors, engine: engine?.stats() }));
