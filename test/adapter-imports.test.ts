import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';

// Frameworks are optional peer dependencies: the core, and even each adapter module, must load without
// them (an adapter only types against its framework; the application brings the framework itself).

/** Runs an ESM snippet in a node whose module resolution refuses every web framework. */
function runWithoutFrameworks(script: string): string {
  const hooks = `export async function resolve(specifier, context, next) {
    if (/^(express|fastify|hono|@hono\\/node-server|ioredis)(\\/|$)/.test(specifier)) throw new Error('framework loaded: ' + specifier);
    return next(specifier, context);
  }`;
  const register = `import { register } from 'node:module'; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hooks)}`)});`;
  return execFileSync(process.execPath, ['--import', 'tsx', '--import', `data:text/javascript,${encodeURIComponent(register)}`, '--input-type=module', '-e', script], { encoding: 'utf8', stdio: 'pipe' });
}

test('importing the core or any adapter module loads no web framework and no Redis client', () => {
  const modules = ['index', 'adapters/node/index', 'adapters/express/index', 'adapters/fastify/index', 'adapters/hono/index'];
  const output = runWithoutFrameworks(`${modules.map((m) => `await import('./src/${m}.ts');`).join(' ')} console.log('loaded');`);
  assert.equal(output.trim(), 'loaded');
});

test('the check above can fail: importing a framework there throws', () => {
  assert.throws(() => runWithoutFrameworks("await import('express');"), /framework loaded: express/);
});
