// What the 4D layer's tests (compat-4d*.test.ts) share: engines on a manual clock, a finished request,
// the TypeError an option selector answers.
import assert from 'node:assert/strict';
import { ManualClock, type SessionEngine, type SessionEngineOptions, type SessionVars } from '../src/index.js';
import { engineWithErrors } from './helpers.js';

export const MINUTE = 60_000;

/** A new engine on a manual clock; stopped by `using`-like try/finally in each test. */
export function makeEngine<Vars extends SessionVars = Record<string, unknown>>(options: SessionEngineOptions<Vars> = {}): SessionEngine<Vars> {
  return engineWithErrors<Vars>({ clock: new ManualClock(), ...options }).engine;
}

/** One finished request from 127.0.0.1: opens a session (or revisits `sessionId`), returns its id. */
export async function visit<Vars extends SessionVars>(engine: SessionEngine<Vars>, sessionId?: string): Promise<string> {
  const lease = await engine.acquire({ sessionId, ip: '127.0.0.1' });
  lease.release();
  return lease.sessionId;
}

export function isOptionError(code: 'ERR_SESSION_INVALID_OPTION' | 'ERR_SESSION_UNKNOWN_OPTION'): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof TypeError, `expected a TypeError, got ${String(error)}`);
    assert.equal((error as TypeError & { code?: unknown }).code, code);
    return true;
  };
}
