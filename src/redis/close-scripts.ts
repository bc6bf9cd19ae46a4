// The scripts of closing: claim a close (closeSession), load, mark and finish it; rename a session. The
// sweep's and a cluster stop's claims: sweep-scripts.ts. Layout: scripts.ts.

import { PRELUDE } from './lua-prelude.js';

/**
 * closeSession from any node. ARGV: P, id, reason, node, now, insiderPid (the caller's process when it
 * runs in the session, else ''), keyTtlMs. Returns 'ok' | 'closing' | 'unknown' | 'moved <newId>' (a logout from a
 * request of the session, which was regenerated before its node heard of it: the close goes on under
 * the new id; from outside, an old id names nothing).
 */
export const CLAIM = `${PRELUDE}
local st = redis.call('HGET', skey(ARGV[2]), 'st')
if not st and ARGV[6] and ARGV[6] ~= '' then
  local to = renamedTo(ARGV[2])
  if to and redis.call('HEXISTS', skey(to), 'b:' .. ARGV[6]) == 1 then return 'moved ' .. to end
end
if st == 'c' then return 'closing' end
if st ~= 'o' then return 'unknown' end
claim(ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[7])
return 'ok'
`;

/**
 * The claimer loads a closing session: is it still ours, which processes, which are still running.
 * ARGV: P, id, node. Returns {'lost'} | {'ok', reason, then per process: pid, busy, hooked, state, name}
 * (a spawned process's name after '=', possibly empty; '' for a request process or a task spawned by a node of an earlier version).
 */
export const LOAD_CLOSING = `${PRELUDE}
local h = skey(ARGV[2])
if redis.call('HGET', h, 'cl') ~= ARGV[3] then return {'lost'} end
local out = {'ok', redis.call('HGET', h, 'rs')}
for _, p in ipairs(plist(h)) do
  out[#out + 1] = p
  out[#out + 1] = redis.call('HGET', h, 'b:' .. p) or '0'
  out[#out + 1] = redis.call('HGET', h, 'hk:' .. p) or '0'
  out[#out + 1] = redis.call('HGET', h, 'd:' .. p) or ''
  local n = redis.call('HGET', h, 'n:' .. p)
  out[#out + 1] = n and ('=' .. n) or ''
end
return out
`;

/** A hook ran: a node taking the close over skips it. ARGV: P, id, pid, node. Returns 1, or 0 if the claim was lost. */
export const HOOKED = `${PRELUDE}
local h = skey(ARGV[2])
if redis.call('HGET', h, 'cl') ~= ARGV[4] then return 0 end
redis.call('HSET', h, 'hk:' .. ARGV[3], '1')
return 1
`;

/** The close is done: the session's key goes, and its processes' locks. ARGV: P, id, node. Returns 1, or 0 if the claim was lost. */
export const FINISH = `${PRELUDE}
local h = skey(ARGV[2])
if redis.call('HGET', h, 'cl') ~= ARGV[3] then return 0 end
-- Every lock a process of the session still holds goes too, also one its saved list does not name (taken
-- by a process object kept past its request): the lock manager's sets list them by process.
for _, pid in ipairs(plist(h)) do
  local set = P .. 'plocks:' .. pid
  for _, key in ipairs(redis.call('SMEMBERS', set)) do
    if redis.call('HGET', key, 'processId') == pid then redis.call('DEL', key) end
  end
  redis.call('DEL', set)
end
redis.call('DEL', h)
redis.call('ZREM', P .. 'closing', ARGV[2])
redis.call('PUBLISH', P .. 'ev', 'x ' .. ARGV[2])
return 1
`;

/**
 * Whether a session has left Redis: its key gone, and not to a new id that lives (a rename leaves
 * P mv:<old>, followed as renamedTo does). One call, so the walk sees one moment. ARGV: P, id. Returns 1 or 0.
 */
export const LEFT = `${PRELUDE}
if redis.call('EXISTS', skey(ARGV[2])) == 1 or renamedTo(ARGV[2]) then return 0 end
return 1
`;

/**
 * regenerate: the session moves to a fresh id, context and all; the old id is dead at once for requests
 * that come with it. What is under way in the session goes on in it: the requests waiting for it (its
 * queue is renamed) and the requests and tasks running in it other than the caller, on any node, whose
 * releases may still name the old id. For them P mv:<old> names the new id, for a key lifetime after
 * the rename. The caller needs none: its node learns the new id from the reply (or, the reply lost, by
 * reading the new key; failing that its release tries the new id itself: renames.ts), so a plain login
 * leaves nothing behind.
 * ARGV: P, old, new, movedTtlMs, callerPid ('' outside a request; nodes of an earlier version pass a
 * sixth argument, no longer read). Returns the live process ids (space-separated), or '' if the session
 * is not open.
 */
export const RENAME = `${PRELUDE}
local old, new = ARGV[2], ARGV[3]
local h, nh = skey(old), skey(new)
if redis.call('HGET', h, 'st') ~= 'o' or redis.call('EXISTS', nh) == 1 then return '' end
redis.call('RENAME', h, nh)
local underWay = false
if redis.call('EXISTS', P .. 'wq:' .. old) == 1 then
  redis.call('RENAME', P .. 'wq:' .. old, P .. 'wq:' .. new)
  underWay = true
end
for _, z in ipairs({'open', 'idle', 'lru'}) do
  local score = redis.call('ZSCORE', P .. z, old)
  if score then redis.call('ZREM', P .. z, old); redis.call('ZADD', P .. z, score, new) end
end
local counted = redis.call('HGET', P .. 'pn', old)
if counted then redis.call('HDEL', P .. 'pn', old); redis.call('HSET', P .. 'pn', new, counted) end
for _, p in ipairs(plist(nh)) do
  local owner = redis.call('HGET', nh, 'o:' .. p)
  if owner and owner ~= '' then
    redis.call('SREM', P .. 'nb:' .. owner, old .. ' ' .. p)
    addRunning(owner, new .. ' ' .. p, ARGV[4])
  end
  if p ~= ARGV[5] and (redis.call('HGET', nh, 'b:' .. p) or '0') ~= '0' then underWay = true end
end
if underWay then
  redis.call('SET', P .. 'mv:' .. old, new, 'PX', ARGV[4])
  -- The forwards to this session, listed in it (the latest ones a walk follows): the node running its
  -- work renews them with its keys (extendSession), so a node that missed the rename still finds the
  -- new id however long that work runs.
  local from = redis.call('HGET', nh, 'mf')
  local list = {}
  if from then for id in string.gmatch(from, '%S+') do list[#list + 1] = id end end
  list[#list + 1] = old
  while #list > 8 do table.remove(list, 1) end
  redis.call('HSET', nh, 'mf', table.concat(list, ' '))
end
redis.call('PUBLISH', P .. 'ev', 'N ' .. old .. ' ' .. new)
-- For nodes of an earlier version, which know only this one.
redis.call('PUBLISH', P .. 'ev', 'n ' .. old)
return redis.call('HGET', nh, 'pl')
`;
