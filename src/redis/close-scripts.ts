// The scripts of closing: claim a close (closeSession, the sweep's timeouts, shutdown), load, mark and
// finish it; the sweep; rename a session. Layout: scripts.ts.

import { PRELUDE } from './lua-prelude.js';

/** Open ids the sweep checks per run for a key that expired while its session ran. */
export const OPEN_SCAN_BATCH = 64;
/** How many idle sessions from the head of 'lru' each sweep checks for a key about to expire. */
const NEAR_EXPIRY_WINDOW = 64;

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
 * The periodic sweep of one node: claims the sessions whose inactivity deadline passed, frees the
 * processes that dead nodes were running, takes over the closes that dead nodes had claimed, and reads
 * the gauges, and keeps the shared keys alive while the cluster is. ARGV: P, now, timeoutMs, node, limit,
 * nodeLeaseMs, keyTtlMs, nearExpiryMs.
 * Returns {claimed…, '|', takenOver…, '|', open, idle, closing, procs}.
 */
export const SWEEP = `${PRELUDE}
local now, node, limit = tonumber(ARGV[2]), ARGV[4], tonumber(ARGV[5])
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'idle', '-inf', now - tonumber(ARGV[3]), 'LIMIT', 0, limit)) do
  if redis.call('HGET', skey(id), 'st') == 'o' then
    claim(id, 'timeout', node, now, ARGV[7])
    out[#out + 1] = id
  else
    forget(id)
  end
end
-- Timeouts above are decided by the sweeping node's clock against the last activity the releasing node
-- wrote with its own; session keys expire by Redis's clock. When the clock that wrote is ahead of every
-- clock that sweeps by more than the grace period (skewed nodes, a clock set back or standing still),
-- the key would expire first and the session vanish without its hook. So an idle session whose key has
-- nearExpiryMs or less to live is timed out now, its keys (its locks') given a full lifetime for the
-- close. 'lru' lists idle sessions mostly in the order their keys were last written (the release that
-- made them idle), so those about to expire are near its head; a lowered timeout, or a process freed
-- from a dead node, puts shorter lives behind longer ones: the first ${NEAR_EXPIRY_WINDOW} are looked at.
local nearMs = tonumber(ARGV[8])
for _, id in ipairs(redis.call('ZRANGE', P .. 'lru', 0, ${NEAR_EXPIRY_WINDOW - 1})) do
  if #out >= limit then break end
  local h = skey(id)
  local left = redis.call('PTTL', h)
  if left == -2 then
    forget(id)
  elseif left >= 0 and left <= nearMs then
    if redis.call('HGET', h, 'st') == 'o' then
      claim(id, 'timeout', node, now, ARGV[7])
      out[#out + 1] = id
    else
      forget(id)
    end
  end
end
out[#out + 1] = '|'
-- A node is dead when it left, or when its lease key has been missing for a whole lease by Redis's own
-- clock: after an outage longer than the lease every key is gone, and the live nodes renew theirs
-- within a third of a lease, so none of them is taken for dead.
local t = redis.call('TIME')
local realMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function isDead(n)
  if redis.call('EXISTS', P .. 'node:' .. n) == 1 then return false end
  if redis.call('EXISTS', P .. 'left:' .. n) == 1 then return true end
  local since = redis.call('GET', P .. 'missing:' .. n)
  if not since then
    redis.call('SET', P .. 'missing:' .. n, digits(realMs), 'PX', digits(tonumber(ARGV[6]) * 10))
    return false
  end
  return realMs - tonumber(since) >= tonumber(ARGV[6])
end
-- A node of an earlier version, renaming a session whose process was freed since (o:<pid> '' rather
-- than absent), files it under a node named '': nobody's, dropped here.
redis.call('DEL', P .. 'nb:')
for _, dead in ipairs(redis.call('SMEMBERS', P .. 'nodes')) do
  if dead ~= node and isDead(dead) then
    -- Told by its next beat, should it be alive after all (stalled, or cut from Redis): the processes it
    -- ran are freed below and may run elsewhere, while its requests and tasks go on there. Kept as long
    -- as the sessions whose processes it frees. (A node that left beats no more.)
    -- It holds Redis's time of the sweep and no beat deletes it: a beat whose reply is lost (the connection
    -- cut just then) must not take it away unread; the node compares it with the last it saw (heartbeat.ts).
    if redis.call('EXISTS', P .. 'left:' .. dead) == 0 then redis.call('SET', P .. 'swept:' .. dead, digits(realMs), 'PX', ARGV[7]) end
    redis.call('DEL', P .. 'missing:' .. dead, P .. 'left:' .. dead)
    for _, m in ipairs(redis.call('SMEMBERS', P .. 'nb:' .. dead)) do
      local id, pid = string.match(m, '^(%S+) (%S+)$')
      local h = skey(id)
      if redis.call('EXISTS', h) == 0 then
        -- Its key expired while it ran (a cluster down for longer than the session timeout).
        forget(id)
      elseif redis.call('HGET', h, 'o:' .. pid) == dead then
        -- Its request died with its node: the process is free again, with the state last saved.
        redis.call('HSET', h, 'b:' .. pid, '0')
        redis.call('HDEL', h, 'o:' .. pid)
        local st = redis.call('HGET', h, 'st')
        if st == 'o' and allFree(h) then markIdle(id, redis.call('HGET', h, 'la')) end
        redis.call('PUBLISH', P .. 'ev', 'r ' .. id)
      end
    end
    redis.call('DEL', P .. 'nb:' .. dead)
    for _, id in ipairs(redis.call('ZRANGE', P .. 'closing', 0, -1)) do
      local h = skey(id)
      if redis.call('EXISTS', h) == 0 then
        redis.call('ZREM', P .. 'closing', id)
      elseif redis.call('HGET', h, 'cl') == dead then
        redis.call('HSET', h, 'cl', node)
        out[#out + 1] = id
      end
    end
    redis.call('SREM', P .. 'nodes', dead)
  end
end
-- Ids counted open whose key expired while they ran (a cluster down for longer than the session
-- timeout, its nodes' lists of what they ran gone too) are in no idle set: no timeout, eviction or dead
-- node finds them. A few open ids per sweep are checked, round the whole set in turn. The check goes on
-- after the last id it kept ("<rank> <id>"): older sessions that closed since shift the ranks, not it.
local cursor = 0
local at = redis.call('GET', P .. 'oscan')
if at then
  local rank, last = string.match(at, '^(%d+) (.*)$')
  local lastRank = last and last ~= '' and redis.call('ZRANK', P .. 'open', last)
  cursor = lastRank and lastRank + 1 or tonumber(rank or '0')
end
local scanned = redis.call('ZRANGE', P .. 'open', cursor, cursor + ${OPEN_SCAN_BATCH - 1})
local kept = ''
for _, id in ipairs(scanned) do
  if redis.call('EXISTS', skey(id)) == 0 then forget(id) else cursor = cursor + 1; kept = id end
end
if #scanned < ${OPEN_SCAN_BATCH} then cursor = 0; kept = '' end
redis.call('SET', P .. 'oscan', cursor .. ' ' .. kept, 'PX', ARGV[7])
-- A live node sweeps every second or so: the shared keys outlive every session key while a node lives,
-- however long no session is created (creating one is the only other write that refreshes them).
touchGlobals(ARGV[7])
out[#out + 1] = '|'
out[#out + 1] = redis.call('ZCARD', P .. 'open')
out[#out + 1] = redis.call('ZCARD', P .. 'idle')
out[#out + 1] = redis.call('ZCARD', P .. 'closing')
out[#out + 1] = tonumber(redis.call('GET', P .. 'procs') or '0')
return out
`;

/**
 * Claims every open session for a cluster shutdown, a batch at a time. ARGV: P, node, now, limit, keyTtlMs.
 * Returns the ids claimed, then how many ids the batch looked at (leftovers are dropped, not claimed).
 */
export const CLAIM_ALL = `${PRELUDE}
local out = {}
local batch = redis.call('ZRANGE', P .. 'open', 0, tonumber(ARGV[4]) - 1)
for _, id in ipairs(batch) do
  if redis.call('HGET', skey(id), 'st') == 'o' then
    claim(id, 'shutdown', ARGV[2], tonumber(ARGV[3]), ARGV[5])
    out[#out + 1] = id
  else
    -- Its key expired (a crashed cluster's leftover): forgotten everywhere, as the sweep and create do.
    forget(id)
  end
end
-- Last: how many ids this batch looked at (a batch of leftovers claims nothing, yet more may follow).
out[#out + 1] = tostring(#batch)
return out
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
