// The package as a user installing it from npm meets it: the public names of every entry point (built),
// what `npm pack` ships (built code, its source maps with their sources, the licence text, also when
// packed from a clean checkout with no dist/ yet) and how a CommonJS consumer's require() resolves it.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, normalize, relative, resolve } from 'node:path';
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

const GUARD = { timeout: 120_000 };
const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { exports: Record<string, Record<string, string>>; license?: string };
const SPECIFIERS = Object.keys(pkg.exports).map((key) => (key === '.' ? 'legacy-web-sessions' : `legacy-web-sessions/${key.slice(2)}`));

/** The files `npm pack` would put in the tarball (its prepack script runs: the build). */
function packedFiles(cwd = '.'): string[] {
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts=false'], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const [report] = JSON.parse(out) as [{ files: Array<{ path: string }> }];
  return report.files.map((f) => f.path);
}

let packed: Set<string>;
before(() => { packed = new Set(packedFiles()); });

test('require() of every entry point loads it on a Node that can require ES modules (20.19+, 22.12+), else fails with ERR_REQUIRE_ESM, never "No exports main defined"', GUARD, () => {
  const canRequireEsm = (process.features as { require_module?: boolean }).require_module === true;
  for (const specifier of SPECIFIERS) {
    const run = spawnSync(process.execPath, ['-e', `
      try { const m = require(${JSON.stringify(specifier)}); console.log('loaded', Object.keys(m).length > 0); }
      catch (e) { console.log('failed', e.code); }`], { encoding: 'utf8' });
    assert.equal(run.stdout.trim(), canRequireEsm ? 'loaded true' : 'failed ERR_REQUIRE_ESM', `require('${specifier}') on Node ${process.version}`);
  }
});

test('the source maps npm pack ships carry their sources (the tarball has no src/)', GUARD, () => {
  const missing: string[] = [];
  for (const file of packed) {
    if (!file.endsWith('.js.map')) continue;
    const map = JSON.parse(readFileSync(file, 'utf8')) as { sources: string[]; sourcesContent?: Array<string | null>; sourceRoot?: string };
    map.sources.forEach((source, i) => {
      if (map.sourcesContent?.[i] != null) return;
      const target = normalize(relative('.', resolve(dirname(file), map.sourceRoot ?? '', source)));
      if (!packed.has(target)) missing.push(`${file} -> ${target}`);
    });
  }
  assert.ok([...packed].some((file) => file.endsWith('.js.map')), 'source maps are shipped');
  assert.deepEqual(missing.slice(0, 3), [], `${missing.length} source map entries point outside the tarball`);
});

test('npm pack from a clean checkout (no dist/ yet) builds and ships every entry point', GUARD, () => {
  const dir = mkdtempSync(join(tmpdir(), 'lws-pack-'));
  try {
    for (const entry of ['src', 'package.json', 'tsconfig.json', 'tsconfig.build.json', 'README.md', 'LICENSE']) cpSync(entry, join(dir, entry), { recursive: true });
    symlinkSync(resolve('node_modules'), join(dir, 'node_modules'));
    const files = packedFiles(dir);
    for (const entry of Object.values(pkg.exports)) {
      for (const target of Object.values(entry)) assert.ok(files.includes(normalize(target)), `${target} missing from the tarball (${files.length} files)`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the package ships the text of the licence it declares', GUARD, () => {
  assert.equal(pkg.license, 'MIT');
  assert.ok(packed.has('LICENSE'), `no LICENSE in the tarball: ${[...packed].filter((f) => !f.startsWith('dist/')).join(', ')}`);
  assert.match(readFileSync('LICENSE', 'utf8'), /^MIT License/);
});
