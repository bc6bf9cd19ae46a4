// The messages between bench/http.ts (parent) and bench/server.ts (child), over the Node IPC channel.
// IPC rather than an HTTP route: a stats request through `createServer` would itself be a session
// request (a new session, an eviction under churn) and skew what it measures.

import type { EngineStats } from '../src/index.js';

/**
 * 'peer': the framework with the session library its users would pick instead of ours (bench/peers.ts).
 * 'control': bare node:http running each request in an AsyncLocalStorage.run and nothing else (bench/http.ts):
 * what giving each request an async context costs bare node:http on this Node version, sessions or not.
 */
export type ServerKind = 'bare' | 'ours' | 'peer' | 'control';
export type WorkloadName = 'returning' | 'churn';

export const SERVER_KINDS: readonly ServerKind[] = ['bare', 'ours', 'peer', 'control'];
export const WORKLOAD_NAMES: readonly WorkloadName[] = ['returning', 'churn'];

/** Sessions pre-created for the returning-visitors workload (and the engine's caps for it). */
export const RETURNING_SESSIONS = 1000;
/** The session cap under churn: every newcomer past it evicts the least recently active idle session. */
export const CHURN_MAX_SESSIONS = 100;

/** Counters since the child started; the parent takes differences around each round. */
export interface ServerSnapshot {
  /** Requests the handler ran. */
  readonly handled: number;
  /** onClose hooks run (always 0 for 'bare'). */
  readonly hooks: number;
  /** Handler errors and engine 'error' events. */
  readonly errors: number;
  /** process.cpuUsage() of the server, microseconds (user + system). */
  readonly cpuMicros: number;
  /** performance.now() when the snapshot was taken, ms. */
  readonly atMs: number;
  /** engine.stats() ('ours' only). */
  readonly engine: EngineStats | undefined;
  /** Sessions a peer library created, as its application saw them ('peer' only: ours has engine.stats()). */
  readonly peerSessionsCreated?: number;
  /**
   * process.memoryUsage() when the snapshot was taken: after a full garbage collection when one was
   * asked for (`collect`) and the server runs with --expose-gc, so the heap figure is what is live.
   */
  readonly heapUsedBytes: number;
  /** Memory outside the JS heap that JS objects hold (Buffers, typed arrays). */
  readonly externalBytes: number;
  readonly rssBytes: number;
}

export type ChildMessage = { readonly type: 'ready'; readonly port: number } | { readonly type: 'snapshot'; readonly snapshot: ServerSnapshot };
/** `collect`: run a full garbage collection (servers started with --expose-gc) before reading memory. */
export type ParentMessage = { readonly type: 'snapshot'; readonly collect?: boolean } | { readonly type: 'exit' };

export function isServerKind(value: unknown): value is ServerKind {
  return SERVER_KINDS.includes(value as ServerKind);
}

export function isWorkloadName(value: unknown): value is WorkloadName {
  return WORKLOAD_NAMES.includes(value as WorkloadName);
}

/**
 * The servers bench/adapters.ts compares, each bare and with sessions (bench/adapter-server.ts). Not in
 * the default list: 'redis' (node:http with the sessions in Redis, `npm run bench -- --redis`) and
 * 'node-als' (bare is node:http running each request in an AsyncLocalStorage.run, as ours does: what
 * sessions cost beyond the async context any library that offers one pays for on this Node version),
 * 'hono-middleware' (bare is Hono with one no-op middleware: what our middleware costs beyond what any
 * middleware costs, since one takes Hono off its synchronous single-handler path).
 */
export type FrameworkName = 'node' | 'express' | 'fastify' | 'hono' | 'redis' | 'hono-middleware' | 'node-als';
export const FRAMEWORK_NAMES: readonly FrameworkName[] = ['node', 'express', 'fastify', 'hono'];

export function isFrameworkName(value: unknown): value is FrameworkName {
  return value === 'redis' || value === 'hono-middleware' || value === 'node-als' || FRAMEWORK_NAMES.includes(value as FrameworkName);
}

/** Where the Redis benchmark's store connects, and the prefix its keys live under (deleted afterwards). */
export const BENCH_REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
export const BENCH_REDIS_PREFIX = 'lws-bench:';
