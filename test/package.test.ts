import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import type * as Core from '../src/index.js';
import type * as NodeAdapter from '../src/adapters/node/index.js';
import type * as FourD from '../src/compat-4d.js';

// Specifiers held in a variable: the type-check must not need dist/ (it runs before any build).
const load = <T>(specifier: string): Promise<T> => import(specifier) as Promise<T>;

// The public names are a contract (DESIGN.md §2): tests outside this repository import them from the built package.
test('npm run build emits dist/ with declarations, and every entry point exports its public names', async () => {
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { stdio: 'pipe' });
  for (const file of ['dist/index.d.ts', 'dist/adapters/node/index.d.ts', 'dist/compat-4d.d.ts']) assert.ok(existsSync(file), file);

  const core = await load<typeof Core>('legacy-web-sessions');
  assert.equal(typeof core.SessionEngine, 'function');
  const engine = new core.SessionEngine();
  for (const method of ['closeSession', 'getOption', 'setOption', 'currentSessionId', 'sessionExpiration', 'sessionProcessCount', 'sessions', 'stats', 'on', 'stop']) {
    assert.equal(typeof (engine as unknown as Record<string, unknown>)[method], 'function', method);
  }
  assert.equal(typeof engine[Symbol.asyncDispose], 'function');
  await engine.stop();

  const node = await load<typeof NodeAdapter>('legacy-web-sessions/node');
  assert.equal(typeof node.createServer, 'function');

  // Each framework entry point exports `sessions` (app.use(sessions(engine)) / app.register(sessions, { engine })).
  for (const framework of ['express', 'fastify', 'hono']) {
    assert.ok(existsSync(`dist/adapters/${framework}/index.d.ts`), framework);
    const adapter = await load<{ sessions: unknown }>(`legacy-web-sessions/${framework}`);
    assert.equal(typeof adapter.sessions, 'function', framework);
  }

  const redis = await load<{ createRedisStore: unknown; RedisLockManager: unknown }>('legacy-web-sessions/redis');
  assert.equal(typeof redis.createRedisStore, 'function');
  assert.equal(typeof redis.RedisLockManager, 'function');

  const fourD = await load<typeof FourD>('legacy-web-sessions/4d');
  assert.equal(typeof fourD.use4D, 'function');
  assert.deepEqual(
    [fourD.Web_max_concurrent_processes, fourD.Web_legacy_session, fourD.Web_max_sessions, fourD.Web_inactive_session_timeout,
      fourD.Web_session_cookie_name, fourD.Web_inactive_process_timeout, fourD.Web_session_cookie_domain, fourD.Web_session_cookie_path,
      fourD.Web_session_enable_IP_address_validation, fourD.Web_scalable_session],
    [18, 70, 71, 72, 73, 78, 81, 82, 83, 90],
  );
  assert.deepEqual(Object.keys(fourD.use4D(new core.SessionEngine())).sort(), [
    'WEB_GET_OPTION', 'WEB_Get_Current_Session_ID', 'WEB_Get_session_process_count', 'WEB_LEGACY_CLOSE_SESSION', 'WEB_LEGACY_GET_SESSION_EXPIRATION', 'WEB_SET_OPTION',
  ].sort());
});
