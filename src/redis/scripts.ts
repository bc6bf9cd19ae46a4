// The Lua side of the Redis store. Every decision that reads or writes more than one key is one script:
// Redis runs a script to the end before any other command, so two nodes never both take a process,
// both evict the same session, or both claim a close. ARGV[1] is always the key prefix (P).
//
// Layout:
//   P s:<id>        hash: ip, cr (created), lr (last request start), la (last activity end),
//                   st ('o' open | 'c' closing), rs (close reason), cl (node that claimed the close),
//                   pl (live process ids, space-separated), tk (fencing counter),
//                   per process <pid>: k:<pid> ('w' request process | 't' task), b:<pid> (fencing token of
//                   the request running in it, '0' when free), o:<pid> (node running it), d:<pid>
//                   (serialized state), hk:<pid> (its hook has run)
//   P wq:<id>       zset waiter -> Redis time of its last try (requests waiting for the session, any node)
//   P open          zset id -> created             (the global cap counts it)
//   P idle          zset id -> last activity end  (timeouts)
//   P lru           zset id -> order of going idle (eviction: least recently active first; P lrun counts)
//   P closing       zset id -> claim time
//   P procs         processes of open sessions (maxConcurrentProcesses)
//   P seq           process id counter: ids r1, r2… are never reused
//   P nodes         set of node ids; P node:<node> expires unless its node renews it (liveness);
//                   P stopping:<node> while it stops; P left:<node> once it left; P missing:<node>
//                   when a sweep first found its lease gone (dead a lease later, if still gone)
//   P nb:<node>     set of "<id> <pid>" a node is running: freed when the node is found dead
//   P opts          hash of options set at run time (JSON values)
//   channel P ev    'c <id>' close claimed · 'r <id>' a process was released · 'x <id>' closed ·
//                   'n <id>' renamed (regenerate) · 'o <node> <name> <json>' option changed
// Every write to a session refreshes its key's TTL (session timeout + grace), so a crashed cluster
// leaves nothing behind.

const PRELUDE = `
local P = ARGV[1]
local function skey(id) return P .. 's:' .. id end
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
local function markIdle(id, atMs)
  redis.call('ZADD', P .. 'idle', atMs, id)
  redis.call('ZADD', P .. 'lru', redis.call('INCR', P .. 'lrun'), id)
end
local function markBusy(id)
  redis.call('ZREM', P .. 'idle', id)
  redis.call('ZREM', P .. 'lru', id)
end
local function touchGlobals(ttl)
  for _, k in ipairs({'open', 'idle', 'lru', 'lrun', 'closing', 'procs', 'seq', 'nodes'}) do redis.call('PEXPIRE', P .. k, ttl) end
end
-- Step 1 of the close pipeline, cluster-wide: the id is dead from now on, its processes stop counting.
local function claim(id, reason, node, now)
  local h = skey(id)
  redis.call('HSET', h, 'st', 'c', 'rs', reason, 'cl', node)
  redis.call('ZREM', P .. 'open', id)
  markBusy(id)
  redis.call('ZADD', P .. 'closing', now, id)
  redis.call('DECRBY', P .. 'procs', #plist(h))
  redis.call('DEL', P .. 'wq:' .. id)
  redis.call('PUBLISH', P .. 'ev', 'c ' .. id)
end
`;

/**
 * A request with a cookie. ARGV: P, id, ip, now, cookieTtlMs, ipCheck, perSession, maxProcs, node,
 * keyTtlMs, waiterId, maxQueued, waiterStaleMs, waiterRegistered.
 * Returns {'ok', pid, token, state, created, lastRequest, processCount} | {'unknown'} | {'ip'} | {'busy'} | {'full'}.
 * Requests waiting for the session (any node) are members of P wq:<id>, scored by Redis's own time when
 * they last tried: a waiter whose node died or gave up stops counting after waiterStaleMs.
 */
const ENTER = `${PRELUDE}
local id, ip, now = ARGV[2], ARGV[3], tonumber(ARGV[4])
local h = skey(id)
local wq = P .. 'wq:' .. id
local f = redis.call('HMGET', h, 'st', 'lr', 'ip', 'cr', 'pl')
if f[1] ~= 'o' then return {'unknown'} end
if now >= tonumber(f[2]) + tonumber(ARGV[5]) then return {'unknown'} end
if ARGV[6] == '1' and f[3] ~= ip then return {'ip'} end
local list = {}
if f[5] then for p in string.gmatch(f[5], '%S+') do list[#list + 1] = p end end
local slot
local state = ''
local web = 0
for _, p in ipairs(list) do
  local kbd = redis.call('HMGET', h, 'k:' .. p, 'b:' .. p)
  if kbd[1] == 'w' then
    web = web + 1
    if not slot and kbd[2] == '0' then slot = p end
  end
end
if not slot then
  if web < tonumber(ARGV[7]) and tonumber(redis.call('GET', P .. 'procs') or '0') < tonumber(ARGV[8]) then
    slot = 'r' .. redis.call('INCR', P .. 'seq')
    list[#list + 1] = slot
    redis.call('HSET', h, 'pl', table.concat(list, ' '), 'k:' .. slot, 'w', 'd:' .. slot, '')
    redis.call('INCR', P .. 'procs')
  else
    local t = redis.call('TIME')
    local realMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    redis.call('ZREMRANGEBYSCORE', wq, '-inf', realMs - tonumber(ARGV[13]))
    local waiting = redis.call('ZCARD', wq)
    if redis.call('ZSCORE', wq, ARGV[11]) then waiting = waiting - 1 end
    if waiting >= tonumber(ARGV[12]) then return {'full'} end
    redis.call('ZADD', wq, realMs, ARGV[11])
    redis.call('PEXPIRE', wq, ARGV[10])
    return {'busy'}
  end
else
  state = redis.call('HGET', h, 'd:' .. slot) or ''
end
local token = redis.call('HINCRBY', h, 'tk', 1)
redis.call('HSET', h, 'b:' .. slot, token, 'o:' .. slot, ARGV[9], 'lr', now)
markBusy(id)
redis.call('SADD', P .. 'nb:' .. ARGV[9], id .. ' ' .. slot)
redis.call('PEXPIRE', h, ARGV[10])
if ARGV[14] == '1' then redis.call('ZREM', wq, ARGV[11]) end
return {'ok', slot, tostring(token), state, f[4], tostring(now), tostring(#list)}
`;

/**
 * A request that will wait behind others of its node: checked as lwsEnter checks (open, cookie lifetime,
 * IP), then counted among the session's waiters now, so the bound holds however the waiting requests are
 * spread. ARGV: P, id, waiterId, maxQueued, staleMs, keyTtlMs, now, cookieTtlMs, ipCheck, ip.
 * Returns 'ok' | 'full' | 'unknown' | 'ip'. Called again on each poll to stay counted.
 */
const WAIT = `${PRELUDE}
local f = redis.call('HMGET', skey(ARGV[2]), 'st', 'lr', 'ip')
if f[1] ~= 'o' or tonumber(ARGV[7]) >= tonumber(f[2]) + tonumber(ARGV[8]) then return 'unknown' end
if ARGV[9] == '1' and f[3] ~= ARGV[10] then return 'ip' end
local wq = P .. 'wq:' .. ARGV[2]
local t = redis.call('TIME')
local realMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', wq, '-inf', realMs - tonumber(ARGV[5]))
if not redis.call('ZSCORE', wq, ARGV[3]) and redis.call('ZCARD', wq) >= tonumber(ARGV[4]) then return 'full' end
redis.call('ZADD', wq, realMs, ARGV[3])
redis.call('PEXPIRE', wq, ARGV[6])
return 'ok'
`;

/**
 * A new session, evicting the least recently active idle ones cluster-wide while there is no room.
 * ARGV: P, id, ip, now, cap, maxProcs, node, keyTtlMs.
 * Returns {'ok', pid, victims…} | {'limit'} | {'plimit'} (a refusal evicts nothing).
 */
const CREATE = `${PRELUDE}
local id, now, node = ARGV[2], tonumber(ARGV[4]), ARGV[7]
local cap, maxProcs = tonumber(ARGV[5]), tonumber(ARGV[6])
local sessionsToFree = redis.call('ZCARD', P .. 'open') - cap + 1
local processesToFree = tonumber(redis.call('GET', P .. 'procs') or '0') - maxProcs + 1
local victims = {}
if sessionsToFree > 0 or processesToFree > 0 then
  -- Evicts only what makes room: with the cap lowered below the busy sessions, closing the idle ones
  -- would destroy them and still refuse the newcomer. Each idle session (or leftover) frees one place.
  if sessionsToFree > redis.call('ZCARD', P .. 'lru') then return {'limit'} end
  local leftovers = {}
  local offset = 0
  while sessionsToFree > #victims or processesToFree > 0 do
    local batch = redis.call('ZRANGE', P .. 'lru', offset, offset + 15)
    if #batch == 0 then break end
    offset = offset + #batch
    for _, v in ipairs(batch) do
      if sessionsToFree <= #victims and processesToFree <= 0 then break end
      if redis.call('HGET', skey(v), 'st') == 'o' then
        victims[#victims + 1] = v
        processesToFree = processesToFree - #plist(skey(v))
      else
        -- Its key expired (a crashed cluster's leftover): forgotten, whatever this request's outcome.
        leftovers[#leftovers + 1] = v
        sessionsToFree = sessionsToFree - 1
      end
    end
  end
  for _, v in ipairs(leftovers) do
    markBusy(v)
    redis.call('ZREM', P .. 'open', v)
  end
  if sessionsToFree > #victims then return {'limit'} end
  if processesToFree > 0 then return {'plimit'} end
  for _, v in ipairs(victims) do claim(v, 'evicted', node, now) end
end
local h = skey(id)
local pid = 'r' .. redis.call('INCR', P .. 'seq')
redis.call('HSET', h, 'ip', ARGV[3], 'cr', now, 'lr', now, 'la', now, 'st', 'o', 'pl', pid, 'tk', 1,
  'k:' .. pid, 'w', 'b:' .. pid, 1, 'o:' .. pid, node, 'd:' .. pid, '')
redis.call('PEXPIRE', h, ARGV[8])
redis.call('ZADD', P .. 'open', now, id)
redis.call('INCR', P .. 'procs')
redis.call('SADD', P .. 'nb:' .. node, id .. ' ' .. pid)
touchGlobals(ARGV[8])
return {'ok', pid, unpack(victims)}
`;

/**
 * The end of a request or task: saves its state if its token still holds, frees its process. A stale
 * token (the session closed and its process was freed or its key deleted) writes nothing: no resurrection.
 * ARGV: P, id, pid, token, now, keyTtlMs, node, hasState, state, endsProcess.
 * Returns {'ok', st} | {'stale'} | {'gone'}.
 */
const RELEASE = `${PRELUDE}
local id, pid = ARGV[2], ARGV[3]
local h = skey(id)
redis.call('SREM', P .. 'nb:' .. ARGV[7], id .. ' ' .. pid)
local f = redis.call('HMGET', h, 'b:' .. pid, 'st', 'pl')
local b, st = f[1], f[2]
if not b then return {'gone'} end
if b ~= ARGV[4] then return {'stale'} end
local others = {}
if f[3] then for p in string.gmatch(f[3], '%S+') do if p ~= pid then others[#others + 1] = p end end end
if ARGV[10] == '1' and st == 'o' then
  -- A task that ended on its own ends its process (no hook: its session is not closing).
  redis.call('HSET', h, 'pl', table.concat(others, ' '))
  redis.call('HDEL', h, 'b:' .. pid, 'o:' .. pid, 'd:' .. pid, 'k:' .. pid)
  redis.call('DECR', P .. 'procs')
else
  if ARGV[8] == '1' then redis.call('HSET', h, 'd:' .. pid, ARGV[9], 'b:' .. pid, '0')
  else redis.call('HSET', h, 'b:' .. pid, '0') end
  redis.call('HDEL', h, 'o:' .. pid)
end
if st == 'o' then
  redis.call('HSET', h, 'la', ARGV[5])
  local free = true
  if #others > 0 then
    local fields = {}
    for i, p in ipairs(others) do fields[i] = 'b:' .. p end
    for _, v in ipairs(redis.call('HMGET', h, unpack(fields))) do if v ~= '0' then free = false end end
  end
  if free then markIdle(id, ARGV[5]) end
  redis.call('PEXPIRE', h, ARGV[6])
end
if st ~= 'o' or redis.call('EXISTS', P .. 'wq:' .. id) == 1 then redis.call('PUBLISH', P .. 'ev', 'r ' .. id) end
return {'ok', st}
`;

/**
 * A spawned task's process (its id made by the spawning node). ARGV: P, id, node, maxProcs, keyTtlMs, pid.
 * Returns {'ok', token} | {'closed'} | {'plimit'}.
 */
const SPAWN = `${PRELUDE}
local id, node = ARGV[2], ARGV[3]
local h = skey(id)
if redis.call('HGET', h, 'st') ~= 'o' then return {'closed'} end
if tonumber(redis.call('GET', P .. 'procs') or '0') >= tonumber(ARGV[4]) then return {'plimit'} end
local pid = ARGV[6]
local list = plist(h)
list[#list + 1] = pid
local token = redis.call('HINCRBY', h, 'tk', 1)
redis.call('HSET', h, 'pl', table.concat(list, ' '), 'k:' .. pid, 't', 'b:' .. pid, token, 'o:' .. pid, node, 'd:' .. pid, '')
redis.call('INCR', P .. 'procs')
markBusy(id)
redis.call('SADD', P .. 'nb:' .. node, id .. ' ' .. pid)
redis.call('PEXPIRE', h, ARGV[5])
return {'ok', tostring(token)}
`;

/** closeSession from any node. ARGV: P, id, reason, node, now. Returns 'ok' | 'closing' | 'unknown'. */
const CLAIM = `${PRELUDE}
local st = redis.call('HGET', skey(ARGV[2]), 'st')
if st == 'c' then return 'closing' end
if st ~= 'o' then return 'unknown' end
claim(ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]))
return 'ok'
`;

/**
 * The periodic sweep of one node: claims the sessions whose inactivity deadline passed, frees the
 * processes that dead nodes were running, takes over the closes that dead nodes had claimed, and reads
 * the gauges. ARGV: P, now, timeoutMs, node, limit, nodeLeaseMs.
 * Returns {claimed…, '|', takenOver…, '|', open, idle, closing, procs}.
 */
const SWEEP = `${PRELUDE}
local now, node, limit = tonumber(ARGV[2]), ARGV[4], tonumber(ARGV[5])
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'idle', '-inf', now - tonumber(ARGV[3]), 'LIMIT', 0, limit)) do
  if redis.call('HGET', skey(id), 'st') == 'o' then
    claim(id, 'timeout', node, now)
    out[#out + 1] = id
  else
    markBusy(id)
    redis.call('ZREM', P .. 'open', id)
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
    redis.call('SET', P .. 'missing:' .. n, realMs, 'PX', tonumber(ARGV[6]) * 10)
    return false
  end
  return realMs - tonumber(since) >= tonumber(ARGV[6])
end
for _, dead in ipairs(redis.call('SMEMBERS', P .. 'nodes')) do
  if dead ~= node and isDead(dead) then
    redis.call('DEL', P .. 'missing:' .. dead, P .. 'left:' .. dead)
    for _, m in ipairs(redis.call('SMEMBERS', P .. 'nb:' .. dead)) do
      local id, pid = string.match(m, '^(%S+) (%S+)$')
      local h = skey(id)
      if redis.call('HGET', h, 'o:' .. pid) == dead then
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
out[#out + 1] = '|'
out[#out + 1] = redis.call('ZCARD', P .. 'open')
out[#out + 1] = redis.call('ZCARD', P .. 'idle')
out[#out + 1] = redis.call('ZCARD', P .. 'closing')
out[#out + 1] = tonumber(redis.call('GET', P .. 'procs') or '0')
return out
`;

/** Claims every open session for a cluster shutdown, a batch at a time. ARGV: P, node, now, limit. Returns the ids. */
const CLAIM_ALL = `${PRELUDE}
local out = {}
for _, id in ipairs(redis.call('ZRANGE', P .. 'open', 0, tonumber(ARGV[4]) - 1)) do
  if redis.call('HGET', skey(id), 'st') == 'o' then
    claim(id, 'shutdown', ARGV[2], tonumber(ARGV[3]))
    out[#out + 1] = id
  else
    redis.call('ZREM', P .. 'open', id)
  end
end
return out
`;

/**
 * The claimer loads a closing session: is it still ours, which processes, which are still running.
 * ARGV: P, id, node. Returns {'lost'} | {'ok', reason, then per process: pid, busy, hooked, state}.
 */
const LOAD_CLOSING = `${PRELUDE}
local h = skey(ARGV[2])
if redis.call('HGET', h, 'cl') ~= ARGV[3] then return {'lost'} end
local out = {'ok', redis.call('HGET', h, 'rs')}
for _, p in ipairs(plist(h)) do
  out[#out + 1] = p
  out[#out + 1] = redis.call('HGET', h, 'b:' .. p) or '0'
  out[#out + 1] = redis.call('HGET', h, 'hk:' .. p) or '0'
  out[#out + 1] = redis.call('HGET', h, 'd:' .. p) or ''
end
return out
`;

/** A hook ran: a node taking the close over skips it. ARGV: P, id, pid, node. Returns 1, or 0 if the claim was lost. */
const HOOKED = `${PRELUDE}
local h = skey(ARGV[2])
if redis.call('HGET', h, 'cl') ~= ARGV[4] then return 0 end
redis.call('HSET', h, 'hk:' .. ARGV[3], '1')
return 1
`;

/** The close is done: the session's key goes. ARGV: P, id, node. Returns 1, or 0 if the claim was lost. */
const FINISH = `${PRELUDE}
local h = skey(ARGV[2])
if redis.call('HGET', h, 'cl') ~= ARGV[3] then return 0 end
redis.call('DEL', h)
redis.call('ZREM', P .. 'closing', ARGV[2])
redis.call('PUBLISH', P .. 'ev', 'x ' .. ARGV[2])
return 1
`;

/**
 * regenerate: the session moves to a fresh id, context and all; the old id is dead at once.
 * ARGV: P, old, new. Returns the live process ids (space-separated), or '' if the session is not open.
 */
const RENAME = `${PRELUDE}
local old, new = ARGV[2], ARGV[3]
local h, nh = skey(old), skey(new)
if redis.call('HGET', h, 'st') ~= 'o' or redis.call('EXISTS', nh) == 1 then return '' end
redis.call('RENAME', h, nh)
if redis.call('EXISTS', P .. 'wq:' .. old) == 1 then redis.call('RENAME', P .. 'wq:' .. old, P .. 'wq:' .. new) end
for _, z in ipairs({'open', 'idle', 'lru'}) do
  local score = redis.call('ZSCORE', P .. z, old)
  if score then redis.call('ZREM', P .. z, old); redis.call('ZADD', P .. z, score, new) end
end
for _, p in ipairs(plist(nh)) do
  local owner = redis.call('HGET', nh, 'o:' .. p)
  if owner then
    redis.call('SREM', P .. 'nb:' .. owner, old .. ' ' .. p)
    redis.call('SADD', P .. 'nb:' .. owner, new .. ' ' .. p)
  end
end
redis.call('PUBLISH', P .. 'ev', 'n ' .. old)
return redis.call('HGET', nh, 'pl')
`;

/**
 * A node says it is alive (and, once it stops, that it is stopping). ARGV: P, node, leaseMs, stopping, keyTtlMs.
 * Returns how many other nodes are alive and not stopping: nodes stopping together all see none, so
 * the sessions close when the whole cluster goes down, and each is claimed once.
 */
const HEARTBEAT = `${PRELUDE}
redis.call('SET', P .. 'node:' .. ARGV[2], '1', 'PX', ARGV[3])
redis.call('DEL', P .. 'missing:' .. ARGV[2])
if ARGV[4] == '1' then redis.call('SET', P .. 'stopping:' .. ARGV[2], '1', 'PX', ARGV[3]) end
redis.call('SADD', P .. 'nodes', ARGV[2])
-- The registry lives as long as its sessions may (a cluster that is gone leaves nothing behind).
if redis.call('PTTL', P .. 'nodes') < tonumber(ARGV[5]) then redis.call('PEXPIRE', P .. 'nodes', ARGV[5]) end
redis.call('PEXPIRE', P .. 'nb:' .. ARGV[2], tonumber(ARGV[3]) * 100)
local others = 0
for _, n in ipairs(redis.call('SMEMBERS', P .. 'nodes')) do
  if n ~= ARGV[2] and redis.call('EXISTS', P .. 'node:' .. n) == 1 and redis.call('EXISTS', P .. 'stopping:' .. n) == 0 then others = others + 1 end
end
return others
`;

/** An option set on one node applies to all. ARGV: P, node, name, json. */
const SET_OPTION = `${PRELUDE}
redis.call('HSET', P .. 'opts', ARGV[3], ARGV[4])
redis.call('PUBLISH', P .. 'ev', 'o ' .. ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[4])
return 1
`;

export const STORE_SCRIPTS = {
  lwsEnter: ENTER,
  lwsWait: WAIT,
  lwsCreate: CREATE,
  lwsRelease: RELEASE,
  lwsSpawn: SPAWN,
  lwsClaim: CLAIM,
  lwsSweep: SWEEP,
  lwsClaimAll: CLAIM_ALL,
  lwsLoadClosing: LOAD_CLOSING,
  lwsHooked: HOOKED,
  lwsFinish: FINISH,
  lwsRename: RENAME,
  lwsHeartbeat: HEARTBEAT,
  lwsSetOption: SET_OPTION,
} as const;

export type StoreScriptName = keyof typeof STORE_SCRIPTS;
