// Prometheus metrics for the demo (prom-client). Gauges and counters are read from engine.stats() at
// scrape time, so the engine does no metrics work per request; only the hook duration is observed as it
// happens, around the close hook.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { CloseReason, EngineStats, SessionEngine, SessionVars } from '../src/index.js';

const REASONS: readonly CloseReason[] = ['evicted', 'timeout', 'closed', 'shutdown'];
// Typed by the engine's causes: one it adds fails the type check here until it is exported too.
const REJECTIONS: Readonly<Record<keyof EngineStats['rejected'], '503' | '400'>> = { sessionLimit: '503', processLimit: '503', queueFull: '503', queueTimeout: '503', stopped: '503', storeUnavailable: '503', ipMismatch: '400' };

export interface DemoMetrics {
  readonly registry: Registry;
  /** Wraps the close hook: observes its duration, whether it returns or throws. */
  timeHook<A extends unknown[]>(hook: (...args: A) => void | Promise<void>): (...args: A) => Promise<void>;
  /** Adds the engine's gauges and counters, read from `engine.stats()` at each scrape. */
  watch<Vars extends SessionVars>(engine: SessionEngine<Vars>): void;
}

export function createMetrics(): DemoMetrics {
  const registry = new Registry();
  const registers = [registry];
  collectDefaultMetrics({ register: registry });
  const hookSeconds = new Histogram({
    name: 'lws_close_hook_duration_seconds', help: 'Duration of the onClose hook (saving a session to SQLite).', registers,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
  });
  return {
    registry,
    timeHook: (hook) => async (...args) => {
      const stop = hookSeconds.startTimer();
      try {
        await hook(...args);
      } finally {
        stop();
      }
    },
    watch: (engine) => watchEngine(engine, registers),
  };
}

function watchEngine<Vars extends SessionVars>(engine: SessionEngine<Vars>, registers: Registry[]): void {
  const gauge = (name: string, help: string, read: () => number): void => {
    new Gauge({ name, help, registers, collect() { this.set(read()); } });
  };
  gauge('lws_sessions', 'Open sessions.', () => engine.stats().sessions);
  gauge('lws_sessions_busy', 'Sessions with a request running or queued, or a spawned task running.', () => engine.stats().busySessions);
  gauge('lws_sessions_closing', 'Sessions whose close pipeline (drain, hooks, teardown) is running.', () => engine.stats().closingSessions);
  gauge('lws_processes', 'Processes counted against maxConcurrentProcesses.', () => engine.stats().processes);
  gauge('lws_queued_requests', 'Requests waiting for their session\'s process.', () => engine.stats().queuedRequests);
  gauge('lws_locks_held', 'Record locks held by processes of open sessions.', () => engine.sessions().reduce((n, s) => n + s.locks.length, 0));
  gauge('lws_max_sessions', 'The maxSessions option now (clamped to maxConcurrentProcesses).', () => engine.getOption('maxSessions'));

  new Counter({
    name: 'lws_sessions_created_total', help: 'Sessions created.', registers,
    collect() { this.reset(); this.inc(engine.stats().created); },
  });
  new Counter({
    name: 'lws_session_closes_total', help: 'Sessions closed, by reason.', labelNames: ['reason'], registers,
    collect() {
      const { closed } = engine.stats();
      this.reset();
      for (const reason of REASONS) this.inc({ reason }, closed[reason]);
    },
  });
  new Counter({
    name: 'lws_rejected_requests_total', help: 'Requests refused by the engine, by cause and HTTP status (503: limits, queue, stopping).', labelNames: ['cause', 'status'], registers,
    collect() {
      const { rejected } = engine.stats();
      this.reset();
      for (const [cause, status] of Object.entries(REJECTIONS)) this.inc({ cause, status }, rejected[cause as keyof typeof REJECTIONS]);
    },
  });
  new Counter({
    name: 'lws_close_hook_errors_total', help: 'onClose hooks that threw (failed) or exceeded closeTimeoutMs (timeout).', labelNames: ['kind'], registers,
    collect() {
      const stats = engine.stats();
      this.reset();
      this.inc({ kind: 'failed' }, stats.hookErrors);
      this.inc({ kind: 'timeout' }, stats.hookTimeouts);
    },
  });
  new Counter({
    name: 'lws_handler_errors_total', help: 'Request handlers that threw (answered with a generic 500).', registers,
    collect() { this.reset(); this.inc(engine.stats().handlerErrors); },
  });
}
