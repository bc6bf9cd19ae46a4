// The Lua side of RedisLockManager. Each script is one atomic decision: Redis runs a script to the end
// before any other command, so two nodes racing for a record cannot both win, and a release never
// interleaves with an acquire of the same process.
//
// Layout (see locks.ts for the key encoding):
//   lock key  -> hash { processId, sessionId, sinceMs }, PEXPIRE'd
//   set key   -> set of the lock keys one process holds, PEXPIRE'd, so any node can release them all
// A set member is the lock key exactly as Redis sees it (KEYS[n] inside the script, so with the client's
// own `keyPrefix` included): scripts that walk a set use members as key names without rebuilding them.
// A member may outlive its lock (the lock key expired, or another process took the record after that),
// so every script checks the hash's processId before touching a member.

/** KEYS: lock, set. ARGV: processId, sessionId, sinceMs, ttlMs. Returns 1 (held by the caller now) or 0. */
const ACQUIRE = `
local holder = redis.call('HGET', KEYS[1], 'processId')
if holder ~= false and holder ~= ARGV[1] then return 0 end
local ttl = tonumber(ARGV[4])
if holder == false then
  redis.call('HSET', KEYS[1], 'processId', ARGV[1], 'sessionId', ARGV[2], 'sinceMs', ARGV[3])
end
-- Locking again never shortens a life that touch() made longer.
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
redis.call('SADD', KEYS[2], KEYS[1])
-- The set must outlive every member it lists, whatever lockTtlMs each node was configured with.
if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
return 1
`;

/** KEYS: lock, set. ARGV: processId. Returns 1 (released) or 0 (not held by the caller; nothing changed). */
const RELEASE = `
if redis.call('HGET', KEYS[1], 'processId') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], KEYS[1])
return 1
`;

/**
 * KEYS: set, then lock keys the caller knows of (may be none). ARGV: processId. Returns how many locks
 * were released. The caller's list is checked too in case the set was lost (evicted under maxmemory);
 * a key met twice is counted once because the first pass deleted it.
 */
const RELEASE_ALL = `
local released = 0
local function release(key)
  if redis.call('HGET', key, 'processId') == ARGV[1] then
    redis.call('DEL', key)
    released = released + 1
  end
end
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do release(key) end
for i = 2, #KEYS do release(KEYS[i]) end
redis.call('DEL', KEYS[1])
return released
`;

/** KEYS: the sets of the processes. ARGV: newSessionId, then one processId per set. Returns locks renamed. */
const RENAME = `
local renamed = 0
for i = 1, #KEYS do
  for _, key in ipairs(redis.call('SMEMBERS', KEYS[i])) do
    if redis.call('HGET', key, 'processId') == ARGV[i + 1] then
      redis.call('HSET', key, 'sessionId', ARGV[1])
      renamed = renamed + 1
    end
  end
end
return renamed
`;

/**
 * Lua: `touchLocks(set, processId, ttlMs)` sets the TTL of a process's set and of every lock it still
 * holds; members that are no longer the process's are dropped (the set then disappears when empty).
 * Returns locks touched. Shared by TOUCH and the Redis store's RELEASE (process-scripts.ts), which renews
 * a process's locks with its session's keys at the end of each of its requests.
 */
export const TOUCH_LOCKS = `
local function touchLocks(set, pid, ttl)
  local touched = 0
  for _, key in ipairs(redis.call('SMEMBERS', set)) do
    if redis.call('HGET', key, 'processId') == pid then
      redis.call('PEXPIRE', key, ttl)
      touched = touched + 1
    else
      redis.call('SREM', set, key)
    end
  end
  if touched > 0 then redis.call('PEXPIRE', set, ttl) end
  return touched
end
`;

/** KEYS: set. ARGV: processId, ttlMs. Returns locks touched (touchLocks). */
const TOUCH = `${TOUCH_LOCKS}return touchLocks(KEYS[1], ARGV[1], ARGV[2])
`;

/**
 * The check that makes a lock call fenced: the caller runs a request or task of a Redis store's session
 * and passes its process's token; the call goes on only while the session's hash still gives the process
 * (`b:<pid>`, ARGV[1]) to that token, following `P mv:<old>` when the session was regenerated since, as
 * the store's RELEASE does. Otherwise the script returns -1 and changes nothing: the process was freed
 * (its node taken for dead, its close past waiting for it) and may be another run's by now, whose locks
 * carry the same process id. ARGV[token]: the run's token, ARGV[token + 1]: the store's prefix,
 * ARGV[token + 2]: the session id. The session's hash is named here from the prefix, as the store's own
 * scripts name it (not passed in KEYS: on a client with a keyPrefix, ioredis would prefix it and
 * nothing else the store writes, and the check would never find the hash).
 */
function fenced(token: number): string {
  return `
local function holdsProcess(h, id)
  for _ = 1, 9 do
    local b = redis.call('HGET', h, 'b:' .. ARGV[1])
    if b then return b == ARGV[${token}] end
    id = redis.call('GET', ARGV[${token + 1}] .. 'mv:' .. id)
    if not id then return false end
    h = ARGV[${token + 1}] .. 's:' .. id
  end
  return false
end
if not holdsProcess(ARGV[${token + 1}] .. 's:' .. ARGV[${token + 2}], ARGV[${token + 2}]) then return -1 end
`;
}

/**
 * The scripts, by the command name ioredis gives them on the client (`defineCommand`). The names carry
 * the package's initials so they cannot clash with an application's own commands on a shared client.
 * `numberOfKeys` is left out where the count varies: the caller passes it first.
 */
export const LOCK_SCRIPTS = {
  lwsLockAcquire: { lua: ACQUIRE, numberOfKeys: 2 },
  lwsLockRelease: { lua: RELEASE, numberOfKeys: 2 },
  lwsLockAcquireFenced: { lua: fenced(5) + ACQUIRE, numberOfKeys: 2 },
  lwsLockReleaseFenced: { lua: fenced(2) + RELEASE, numberOfKeys: 2 },
  lwsLockReleaseAll: { lua: RELEASE_ALL },
  lwsLockRename: { lua: RENAME },
  lwsLockTouch: { lua: TOUCH, numberOfKeys: 1 },
} as const;

/** The client as the lock manager calls it once the scripts are defined (ioredis adds these methods). */
export interface LockCommands {
  lwsLockAcquire(lockKey: string, setKey: string, processId: string, sessionId: string, sinceMs: number, ttlMs: number): Promise<number>;
  lwsLockRelease(lockKey: string, setKey: string, processId: string): Promise<number>;
  lwsLockAcquireFenced(lockKey: string, setKey: string, processId: string, sessionId: string, sinceMs: number, ttlMs: number, token: string, prefix: string, fenceSessionId: string): Promise<number>;
  lwsLockReleaseFenced(lockKey: string, setKey: string, processId: string, token: string, prefix: string, fenceSessionId: string): Promise<number>;
  lwsLockReleaseAll(numberOfKeys: number, ...keysThenArgs: string[]): Promise<number>;
  lwsLockRename(numberOfKeys: number, ...keysThenArgs: string[]): Promise<number>;
  lwsLockTouch(setKey: string, processId: string, ttlMs: number): Promise<number>;
  hmget(key: string, ...fields: string[]): Promise<(string | null)[]>;
}
