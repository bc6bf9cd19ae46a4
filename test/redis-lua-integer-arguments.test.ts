// Redis 7.2.0 to 7.2.4 turn a Lua number passed to redis.call into its shortest text: 100000000 goes
// as '1e+08', which PEXPIRE and SET ... PX refuse ("value is not an integer"), so a lifetime that
// happens to be a multiple of 1e8 ms (27.8 hours) failed the script on those versions (redis#13113;
// 7.0 and 7.2.5+ write the digits). The Redis here writes digits whatever the scripts do, so this
// test reads the scripts instead: every key lifetime they give is either the caller's own text
// (ARGV[n]) or a number written as digits by the prelude's digits().

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LOCK_SCRIPTS, TOUCH_LOCKS } from '../src/redis/lock-scripts.js';
import { TAKE_OVER_DEAD } from '../src/redis/sweep-scripts.js';
import { PRELUDE } from '../src/redis/lua-prelude.js';
import { STORE_SCRIPTS } from '../src/redis/scripts.js';

/** The arguments of each call of `redis.call(` in `lua`, split at top-level commas. */
function redisCalls(lua: string): string[][] {
  const calls: string[][] = [];
  const opening = 'redis.call(';
  for (let start = lua.indexOf(opening); start !== -1; start = lua.indexOf(opening, start + 1)) {
    const args: string[] = [];
    let depth = 0;
    let current = '';
    let quote: string | undefined;
    for (let i = start + opening.length; i < lua.length; i++) {
      const c = lua[i]!;
      if (quote !== undefined) {
        current += c;
        if (c === quote) quote = undefined;
        continue;
      }
      if (c === "'" || c === '"') quote = c;
      if (c === '(' || c === '{') depth++;
      if (c === ')' || c === '}') {
        if (depth === 0) {
          args.push(current.trim());
          break;
        }
        depth--;
      }
      if (c === ',' && depth === 0) {
        args.push(current.trim());
        current = '';
        continue;
      }
      current += c;
    }
    calls.push(args);
  }
  return calls;
}

/** The key lifetimes (milliseconds) a call gives: PEXPIRE's, and SET's after PX. */
function lifetimesIn(args: readonly string[]): string[] {
  const command = args[0]?.replace(/['"]/g, '').toUpperCase();
  if (command === 'PEXPIRE') return args[2] === undefined ? [] : [args[2]];
  if (command === 'SET') {
    const px = args.findIndex((a) => a.replace(/['"]/g, '').toUpperCase() === 'PX');
    return px === -1 || args[px + 1] === undefined ? [] : [args[px + 1]!];
  }
  return [];
}

// ENTER_MANY reads its enters' arguments as A[n], slices of ARGV; RELEASE keeps ARGV[4] as its ttl.
const SAFE_LIFETIME = /^(ARGV\[\d+\]|A\[\d+\]|digits\(.*\))$/s;
const CALLERS_TEXT: Readonly<Record<string, RegExp>> = { lwsRelease: /^local node, ttl = ARGV\[3\], ARGV\[4\]$/m };

// Lua functions shared by several scripts give the lifetime their caller passes as \`ttl\`: each is checked
// once, and every call of it for what it passes there.
const SHARED: ReadonlyArray<{ name: string; lua: string; lifetimes: number; callers: number }> = [
  { name: 'touchLocks', lua: TOUCH_LOCKS, lifetimes: 2, callers: 2 }, // the lock manager's TOUCH, the store's RELEASE
  { name: 'takeOverDead', lua: TAKE_OVER_DEAD, lifetimes: 1, callers: 2 }, // SWEEP, CLAIM_ALL
];
const withoutShared = (lua: string): string => SHARED.reduce((left, shared) => left.replace(shared.lua, ''), lua);
const scripts: Array<[string, string]> = [
  ['prelude', PRELUDE],
  ...Object.entries(STORE_SCRIPTS).map(([name, lua]): [string, string] => [name, withoutShared(lua.replace(PRELUDE, ''))]),
  ...Object.entries(LOCK_SCRIPTS).map(([name, { lua }]): [string, string] => [name, withoutShared(lua)]),
];

for (const shared of SHARED) {
  test(`${shared.name} gives the lifetime its caller passes, and every caller passes its own text`, () => {
    assert.deepEqual(redisCalls(shared.lua).flatMap(lifetimesIn), Array(shared.lifetimes).fill('ttl'));
    const parameters = new RegExp(`local function ${shared.name}\\(([^()]*)\\)`).exec(shared.lua)?.[1]?.split(',').map((p) => p.trim());
    const at = parameters?.indexOf('ttl') ?? -1;
    assert.ok(at >= 0, `${shared.name} takes a ttl: ${parameters?.join(', ')}`);
    let calls = 0;
    for (const [name, lua] of scripts) {
      for (const match of lua.matchAll(new RegExp(`${shared.name}\\(([^()]*)\\)`, 'g'))) {
        calls++;
        const ttl = match[1]!.split(',')[at]?.trim() ?? '';
        const callersTtl = ttl === 'ttl' && CALLERS_TEXT[name]?.test(lua) === true;
        assert.ok(SAFE_LIFETIME.test(ttl) || callersTtl, `${name}: ${shared.name}(${match[1]})`);
      }
    }
    assert.equal(calls, shared.callers, `the scripts that call ${shared.name}`);
  });
}

test('the splitter reads nested calls and quoted commas as one argument (so the check below can fail)', () => {
  assert.deepEqual(redisCalls("redis.call('PEXPIRE', P .. 'a,b', math.max(1, f(2)) * 100)"), [["'PEXPIRE'", "P .. 'a,b'", 'math.max(1, f(2)) * 100']]);
  assert.deepEqual(lifetimesIn(["'SET'", 'k', 'v', "'PX'", 'ttl * 10']), ['ttl * 10']);
  assert.equal(SAFE_LIFETIME.test('ttl * 10'), false);
  assert.equal(SAFE_LIFETIME.test('tonumber(ARGV[3]) * 100'), false);
  assert.equal(SAFE_LIFETIME.test('ARGV[4]'), true);
});

test('every key lifetime a script gives Redis is the caller\'s text or digits(): none is a Lua number Redis 7.2.0-7.2.4 would write as 1e+08', () => {
  const unsafe: string[] = [];
  let lifetimes = 0;
  for (const [name, lua] of scripts) {
    for (const args of redisCalls(lua)) {
      for (const lifetime of lifetimesIn(args)) {
        lifetimes++;
        const callersTtl = lifetime === 'ttl' && CALLERS_TEXT[name]?.test(lua) === true;
        if (!SAFE_LIFETIME.test(lifetime) && !callersTtl) unsafe.push(`${name}: redis.call(${args.join(', ')})`);
      }
    }
  }
  assert.ok(lifetimes >= 15, `the scripts give ${lifetimes} lifetimes: the reading found them`);
  assert.deepEqual(unsafe, []);
});

test('digits() is defined once in the prelude, before any script uses it', () => {
  assert.match(PRELUDE, /local function digits\(n\) return string\.format\('%d', n\) end/);
  assert.ok(PRELUDE.indexOf('local function digits') < PRELUDE.indexOf('digits(', PRELUDE.indexOf('local function digits') + 1));
});
