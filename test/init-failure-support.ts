// What the init-failure tests share: an engine on a store of storeChoices() with its 'create', 'close' and
// 'error' events collected.
import { SessionEngine, type CloseEvent, type CreateEvent, type SessionEngineOptions } from '../src/index.js';
import type { StoreChoice } from './store-choices.js';

export type Vars = { n?: number };
export const IP = '127.0.0.1';
export const RECORD = { table: 'Products', key: 7 };

export function engineOn(choice: Exclude<StoreChoice, 'skip'>, options: SessionEngineOptions<Vars>): { engine: SessionEngine<Vars>; creates: CreateEvent[]; closes: CloseEvent[]; errors: string[] } {
  const engine = new SessionEngine<Vars>({ ...options, ...choice.options });
  const creates: CreateEvent[] = [];
  const closes: CloseEvent[] = [];
  const errors: string[] = [];
  engine.on('create', (event) => creates.push(event));
  engine.on('close', (event) => closes.push(event));
  engine.on('error', (error) => errors.push(error.code));
  return { engine, creates, closes, errors };
}
