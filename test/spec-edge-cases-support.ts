import { SessionEngine, type CloseEvent, type SessionError, type SessionEngineOptions } from '../src/index.js';

export type Vars = { n: number };

/** An engine on the chosen store with its 'error' codes and 'close' events collected. */
export function engineOn(options: SessionEngineOptions<Vars>): { engine: SessionEngine<Vars>; errors: string[]; closes: CloseEvent[] } {
  const engine = new SessionEngine<Vars>({ init: () => ({ n: 0 }), ...options });
  const errors: string[] = [];
  const closes: CloseEvent[] = [];
  engine.on('error', (error: SessionError) => errors.push(error.code));
  engine.on('close', (event) => closes.push(event));
  return { engine, errors, closes };
}
