// The functions every store script starts with (see the layout in scripts.ts). ARGV[1] is the key prefix (P).

export const PRELUDE = `
local P = ARGV[1]
-- A whole number computed here, as the plain digits a command's integer argument needs: Redis 7.2.0 to
-- 7.2.4 turn a Lua number argument into its shortest text (1e+08 for 100000000), which PEXPIRE, SET PX
-- and INCR refuse. Numbers a script only passes on stay the caller's text (ARGV).
local function digits(n) return string.format('%d', n) end
local function skey(id) return P .. 's:' .. id end
-- When a session's cookie expires: its last request plus the lifetime in effect then, or the caller's
-- if lowered since; a raised one counts from the next request on. Unlike the memory store
-- (Scheduler.lowerCookieLifetimes) a lowered lifetime is not written into each session, so one lowered
-- and raised again before the session's next request counts the raised one (README, inactiveSessionTimeoutMs).
-- 'ct' is '<lifetime>@<lr it was given at>': a node of an earlier version moves lr without it,
-- and a 'ct' of another lr (or none) is not that request's, so the caller's lifetime stands alone.
local function cookieExpiry(lr, ct, lifetime)
  local current = tonumber(lifetime)
  local given, at = string.match(ct or '', '^(%d+)@(%d+)$')
  local thenMs = (at and tonumber(at) == tonumber(lr)) and tonumber(given) or current
  return tonumber(lr) + math.min(thenMs, current)
end
local function plist(h)
  local t = {}
  local pl = redis.call('HGET', h, 'pl')
  if pl then for p in string.gmatch(pl, '%S+') do t[#t + 1] = p end end
  return t
end
local function allFree(h)
  for _, p in ipairs(plist(h)) do
    if redis.call('HGET', h, 'b:' .. p) ~= '0' then return false end
  end
  return true
end
-- Idle sessions are kept twice: by time in 'idle' (timeouts) and by order of going idle in 'lru'
-- (eviction), so two sessions idle since the same millisecond still evict in the order they went idle.
-- Shared sets made just now (first, or again after they emptied, which deletes them) live as long as
-- the session key that made them (every write gives it the key lifetime) until the next touchGlobals:
-- a node gone before its next sweep or heartbeat leaves none of them for ever.
local function expireWith(id, ...)
  local ttl = redis.call('PTTL', skey(id))
  if ttl > 0 then for _, k in ipairs({...}) do redis.call('PEXPIRE', P .. k, digits(ttl)) end end
end
local function markIdle(id, atMs)
  redis.call('ZADD', P .. 'idle', atMs, id)
  redis.call('ZADD', P .. 'lru', redis.call('INCR', P .. 'lrun'), id)
  if redis.call('ZCARD', P .. 'idle') == 1 then expireWith(id, 'idle', 'lru', 'lrun') end
end
-- P nb:<node> lists what a node runs and lives by the node's heartbeats. A list made just now (the
-- node's first work, or its first since the list emptied, which deletes it) gets a lifetime at once: a
-- node killed before its next heartbeat, with no other node left to find it dead, would otherwise leave
-- it for ever. Never shorter than the heartbeat gives it (its lease, P node:<node>, times 100): a key
-- lifetime may be shorter than the time to the next heartbeat, and the list would expire under running work.
local function addRunning(node, member, ttl)
  local nb = P .. 'nb:' .. node
  if redis.call('SADD', nb, member) == 1 and redis.call('SCARD', nb) == 1 then
    redis.call('PEXPIRE', nb, digits(math.max(tonumber(ttl), redis.call('PTTL', P .. 'node:' .. node) * 100)))
  end
end
local function markBusy(id)
  redis.call('ZREM', P .. 'idle', id)
  redis.call('ZREM', P .. 'lru', id)
end
-- A new process id (r<n>), never reused: applications key their hooks' effects on it. P seq lives as the
-- shared keys do, so it is gone after the cluster was stopped longer than a key lifetime, or with Redis's
-- data (a restart without persistence, a flush); made afresh, it starts at Redis's time in tenths of a
-- millisecond, above every id handed out before unless the cluster made more than ten processes a
-- millisecond on average since the counter was made. (14 digits: Lua turns a number into text with
-- %.14g, so more would come out as 1.7e+15.)
local function nextPid()
  local seq = P .. 'seq'
  if redis.call('EXISTS', seq) == 0 then
    local t = redis.call('TIME')
    -- As digits (see digits()): INCR would refuse a counter written as 1.7966e+13 for good.
    redis.call('SET', seq, digits(tonumber(t[1]) * 10000 + math.floor(tonumber(t[2]) / 100)))
  end
  return 'r' .. redis.call('INCR', seq)
end
-- Requests waiting only for a place under maxConcurrentProcesses (P pq: members 'id waiterId', scored by
-- Redis's time when each began to wait for one): a place made by a raise or given back is theirs, first
-- come first served, before a newcomer's, a new session's or a task's. One holds its claim while it is
-- counted among its session's waiters (P wq:<id>, within staleMs); the others are dropped as met.
-- Answers how many hold a claim ahead of member me (all of them for nil), counting up to limit; those of
-- session own do not count (its requests keep their own order: each node's turns).
local function placeClaimsAhead(me, own, limit, staleMs)
  local pq = P .. 'pq'
  if limit <= 0 or not staleMs or redis.call('EXISTS', pq) == 0 then return 0 end
  local t = redis.call('TIME')
  local cutoff = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(staleMs)
  local n, offset = 0, 0
  while n < limit do
    local batch = redis.call('ZRANGE', pq, offset, offset + 31)
    if #batch == 0 then break end
    local dropped = 0
    for _, m in ipairs(batch) do
      if m == me then return n end
      local sid, wid = string.match(m, '^(%S+) (%S+)$')
      local score = sid and sid ~= own and tonumber(redis.call('ZSCORE', P .. 'wq:' .. sid, wid))
      if sid == own then
        -- the caller's own session: neither counted nor dropped
      elseif score and score > cutoff then
        n = n + 1
        if n >= limit then return n end
      else
        redis.call('ZREM', pq, m)
        dropped = dropped + 1
      end
    end
    offset = offset + #batch - dropped
  end
  return n
end
local function touchGlobals(ttl)
  for _, k in ipairs({'open', 'idle', 'lru', 'lrun', 'closing', 'procs', 'pn', 'seq', 'nodes', 'opts', 'optv'}) do redis.call('PEXPIRE', P .. k, digits(ttl)) end
end
-- A session's keys (its hash, each process's lock set and the locks in it, the forwards to it from
-- the ids it had before) live at least ttl from now; never a shorter life.
local function extendSession(id, ttl)
  local function extend(key)
    local left = redis.call('PTTL', key)
    if left >= 0 and left < ttl then redis.call('PEXPIRE', key, digits(ttl)) end
  end
  local h = skey(id)
  extend(h)
  -- Forwards from the ids regenerate moved it from, while work that may still name them runs (RENAME).
  local from = redis.call('HGET', h, 'mf')
  if from then for old in string.gmatch(from, '%S+') do extend(P .. 'mv:' .. old) end end
  for _, pid in ipairs(plist(h)) do
    local set = P .. 'plocks:' .. pid
    for _, key in ipairs(redis.call('SMEMBERS', set)) do
      if redis.call('HGET', key, 'processId') == pid then extend(key) end
    end
    extend(set)
  end
end
-- 'procs' counts the processes of open sessions; 'pn' says how many each session counts there, so an
-- id whose key expired (a crashed cluster's leftover) can still give its processes back. A session made
-- before 'pn' existed has no field: it counts what was added since, never less than none.
local function countProcesses(id, n)
  redis.call('INCRBY', P .. 'procs', n)
  if n > 0 or redis.call('HEXISTS', P .. 'pn', id) == 1 then redis.call('HINCRBY', P .. 'pn', id, n) end
end
-- How many processes a leftover gives back when it is forgotten.
local function counted(id)
  return math.max(0, tonumber(redis.call('HGET', P .. 'pn', id) or '0'))
end
-- A leftover (its key expired while its id was still listed): forgotten everywhere, its places given back.
local function forget(id)
  markBusy(id)
  redis.call('ZREM', P .. 'open', id)
  local n = counted(id)
  if n > 0 then redis.call('DECRBY', P .. 'procs', n) end
  redis.call('HDEL', P .. 'pn', id)
end
-- The id of the session that had \`id\` before regenerate renamed it (maybe more than once), or nil.
local function renamedTo(id)
  local to = id
  for _ = 1, 8 do
    to = redis.call('GET', P .. 'mv:' .. to)
    if not to then return nil end
    if redis.call('EXISTS', skey(to)) == 1 then return to end
  end
  return nil
end
-- Step 1 of the close pipeline, cluster-wide: the id is dead from now on, its processes stop counting.
-- A claimed close needs its session's keys (its state, its locks) until its hooks have run: a key whose
-- life ran short (written by a node whose clock is far ahead, or long ago) gets ttl more.
local function claim(id, reason, node, now, ttl)
  if ttl then extendSession(id, tonumber(ttl)) end
  local h = skey(id)
  redis.call('HSET', h, 'st', 'c', 'rs', reason, 'cl', node)
  redis.call('ZREM', P .. 'open', id)
  markBusy(id)
  redis.call('ZADD', P .. 'closing', now, id)
  if redis.call('ZCARD', P .. 'closing') == 1 then expireWith(id, 'closing') end
  redis.call('DECRBY', P .. 'procs', #plist(h))
  redis.call('HDEL', P .. 'pn', id)
  redis.call('DEL', P .. 'wq:' .. id)
  redis.call('PUBLISH', P .. 'ev', 'c ' .. id)
end
`;
