// The library as the benchmark servers load it. By default the published build (`dist/`, tsc's output:
// what `npm install legacy-web-sessions` gives a user), built afresh by the parent script before any
// server starts. `BENCH_LIBRARY=src` runs the TypeScript sources through tsx instead, as the tests do:
// esbuild then wraps every function it makes in a `__name(…)` call (keepNames), including the closures
// made per request, a cost no user pays. The types come from the sources either way.

import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type * as Core from '../src/index.js';
import type * as NodeAdapter from '../src/adapters/node/index.js';
import type * as ExpressAdapter from '../src/adapters/express/index.js';
import type * as FastifyAdapter from '../src/adapters/fastify/index.js';
import type * as HonoAdapter from '../src/adapters/hono/index.js';
import type * as RedisStore from '../src/redis/index.js';

export type LibraryBuild = 'dist' | 'src';

/** Which build the servers load: `BENCH_LIBRARY` (`dist` or `src`), `dist` when unset. */
export function libraryBuild(): LibraryBuild {
  const chosen = process.env.BENCH_LIBRARY ?? 'dist';
  if (chosen !== 'dist' && chosen !== 'src') throw new Error(`BENCH_LIBRARY must be 'dist' or 'src', not '${chosen}'`);
  return chosen;
}

/** For the parent scripts: builds `dist/` (`npm run build`) when the servers will load it, so they never run a stale build. */
export function buildLibraryForServers(): void {
  if (libraryBuild() === 'src') return;
  const result = spawnSync('npm', ['run', '--silent', 'build'], { cwd: fileURLToPath(new URL('..', import.meta.url)), stdio: 'inherit' });
  if (result.status !== 0) throw new Error(`npm run build failed (status ${result.status}): the servers would run a stale or missing dist/`);
}

/** `path` is relative to src/ (or dist/), ending in `.js`. */
async function load<Module>(path: string): Promise<Module> {
  const build = libraryBuild();
  const file = build === 'src' ? path.replace(/\.js$/, '.ts') : path;
  return await import(new URL(`../${build}/${file}`, import.meta.url).href) as Module;
}

// Loaders, not modules loaded here: a parent script imports this file before it builds dist/.
export const loadCore = (): Promise<typeof Core> => load('index.js');
export const loadNodeAdapter = (): Promise<typeof NodeAdapter> => load('adapters/node/index.js');
export const loadExpressAdapter = (): Promise<typeof ExpressAdapter> => load('adapters/express/index.js');
export const loadFastifyAdapter = (): Promise<typeof FastifyAdapter> => load('adapters/fastify/index.js');
export const loadHonoAdapter = (): Promise<typeof HonoAdapter> => load('adapters/hono/index.js');
export const loadRedisStore = (): Promise<typeof RedisStore> => load('redis/index.js');
