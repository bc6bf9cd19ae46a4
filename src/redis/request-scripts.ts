// The scripts of a request's way in: enter its session's process (or wait, or create a session, evicting
// at the cap). Its way out (save and release) is in process-scripts.ts. Layout of the keys: scripts.ts.

import { PRELUDE } from './lua-prelude.js';

/**
 * A request with a cookie. ARGV: P, id, ip, now, cookieTtlMs, ipCheck, perSession, maxProcs, node,
 * keyTtlMs, waiterId, maxQueued, waiterStaleMs, waiterRegistered, copyPid, copyToken.
 * Returns {'ok', 'pid token created processCount copied', state} | {'unknown'} | {'ip'} | {'busy'} |
 * {'full'} | {'moved', newId}. Requests waiting for the session (any node) are members of P wq:<id>,
 * scored by their last try plus their own node's waiterStaleMs; a caller drops those whose score is
 * older than its own window. So a waiter whose node died or gave up stops counting after its own
 * node's window plus the caller's; one of a node that polls seldom is not dropped by a node that polls
 * often; and one of a node of an earlier version (scored by its last try alone) counts as it did. 'moved': the session was regenerated while this request waited for it; it goes
 * on under the new id. Only a waiter counted in the renamed queue learns it (a request that comes with
 * the old id afterwards finds it dead). copyPid/copyToken: the process whose state the node holds a copy
 * of and the session's fencing counter then (StateCopy); when the process taken is that one and the
 * counter has not moved since, the state is left out and copied is '1' (else '0').
 */
const ENTER = `${PRELUDE}
local id, ip, now = ARGV[2], ARGV[3], tonumber(ARGV[4])
local h = skey(id)
local wq = P .. 'wq:' .. id
local f = redis.call('HMGET', h, 'st', 'lr', 'ip', 'cr', 'pl', 'tk', 'ct')
if f[1] ~= 'o' then
  if ARGV[14] == '1' and not f[1] then
    -- Renamed, maybe more than once, while this request was counted among its waiters.
    local to = renamedTo(id)
    if to and redis.call('HGET', skey(to), 'st') == 'o' and redis.call('ZSCORE', P .. 'wq:' .. to, ARGV[11]) then return {'moved', to} end
  end
  return {'unknown'}
end
if now >= cookieExpiry(f[2], f[7], ARGV[5]) then return {'unknown'} end
if ARGV[6] == '1' and f[3] ~= ip then return {'ip'} end
local list = {}
if f[5] then for p in string.gmatch(f[5], '%S+') do list[#list + 1] = p end end
local slot
local state = ''
local copied = '0'
local web, busyWeb = 0, 0
local free
for _, p in ipairs(list) do
  local kbd = redis.call('HMGET', h, 'k:' .. p, 'b:' .. p)
  if kbd[1] == 'w' then
    web = web + 1
    if kbd[2] ~= '0' then busyWeb = busyWeb + 1 elseif not free then free = p end
  end
end
-- A newcomer (not yet counted among the session's waiters) does not take a process ahead of requests
-- that wait for the session on other nodes (counted in wq, not stale): room made meanwhile (a raised
-- processesPerSession or maxConcurrentProcesses, which they learn of at their next poll; a release
-- whose wake is on its way) is theirs first. It waits behind them instead, if the queue has a place
-- for it: a queue that is full (of waiters of a node that died, not yet stale) refuses no request
-- that finds a process free.
local behind = false
if ARGV[14] == '0' and redis.call('EXISTS', wq) == 1 then
  local t = redis.call('TIME')
  redis.call('ZREMRANGEBYSCORE', wq, '-inf', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[13]))
  local waiters = redis.call('ZCARD', wq)
  behind = waiters > 0 and waiters < tonumber(ARGV[12])
end
-- A lowered perSession applies at once: a session with more processes runs no more at a time.
if free and busyWeb < tonumber(ARGV[7]) and not behind then slot = free end
local place = id .. ' ' .. ARGV[11]
if not slot then
  local procs, maxProcs = tonumber(redis.call('GET', P .. 'procs') or '0'), tonumber(ARGV[8])
  local forPlace = not behind and web < tonumber(ARGV[7])
  if forPlace and procs < maxProcs and procs + placeClaimsAhead(place, id, maxProcs - procs, ARGV[13]) < maxProcs then
    slot = nextPid()
    list[#list + 1] = slot
    redis.call('HSET', h, 'pl', table.concat(list, ' '), 'k:' .. slot, 'w', 'd:' .. slot, '')
    countProcesses(id, 1)
  else
    -- A waiter whose client left ('2') keeps its turn on its node but is not counted (maxQueuedRequests).
    if ARGV[14] == '2' then return {'busy'} end
    local t = redis.call('TIME')
    local realMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    redis.call('ZREMRANGEBYSCORE', wq, '-inf', realMs - tonumber(ARGV[13]))
    -- A request already counted keeps its place (maxQueuedRequests lowered since bounds newcomers only).
    if not redis.call('ZSCORE', wq, ARGV[11]) and redis.call('ZCARD', wq) >= tonumber(ARGV[12]) then return {'full'} end
    redis.call('ZADD', wq, realMs + tonumber(ARGV[13]), ARGV[11])
    redis.call('PEXPIRE', wq, ARGV[10])
    -- Waiting only for a place: in line for one from now (kept from its first such wait).
    if forPlace then
      redis.call('ZADD', P .. 'pq', 'NX', realMs, place)
      redis.call('PEXPIRE', P .. 'pq', ARGV[10])
    end
    return {'busy'}
  end
elseif slot == ARGV[15] and f[6] == ARGV[16] then
  copied = '1'
else
  state = redis.call('HGET', h, 'd:' .. slot) or ''
end
local token = tonumber(f[6] or '0') + 1
redis.call('HSET', h, 'tk', token, 'b:' .. slot, token, 'o:' .. slot, ARGV[9], 'lr', now, 'ct', ARGV[5] .. '@' .. ARGV[4])
markBusy(id)
addRunning(ARGV[9], id .. ' ' .. slot, ARGV[10])
redis.call('PEXPIRE', h, ARGV[10])
if ARGV[14] ~= '0' then
  redis.call('ZREM', wq, ARGV[11])
  redis.call('ZREM', P .. 'pq', place)
end
return {'ok', slot .. ' ' .. token .. ' ' .. (f[4] or '0') .. ' ' .. #list .. ' ' .. copied, state}
`;

/**
 * The enters of the requests that reached a node in one turn of its event loop, in one call (ENTER's
 * body run once per enter, in order: the same decisions as that many calls, one script call's overhead
 * on each side instead of one per request). ARGV: P, count, then what every enter of the node shares:
 * cookieTtlMs, ipCheck, perSession, maxProcs, node, keyTtlMs, maxQueued, waiterStaleMs; then per enter
 * three: 'now waiterId waiterRegistered copyPid copyToken' (the node's own values, none with a space; '-'
 * for no copy), ip, id (ENTER's ARGV of the same names).
 * Returns one ENTER reply per enter, in order, or {'err', message} for an enter that raised an error.
 */
export const ENTER_MANY = `${PRELUDE}
local A
local function enter()
${ENTER.slice(PRELUDE.length + 1).replaceAll('ARGV[', 'A[')}end
local out = {}
for i = 0, tonumber(ARGV[2]) - 1 do
  local b = 11 + 3 * i
  local now, waiter, registered, copyPid, copyToken = string.match(ARGV[b], '^(%S+) (%S+) (%S+) (%S+) (%S+)$')
  -- ENTER's ARGV: P, id, ip, now, cookieTtlMs, ipCheck, perSession, maxProcs, node, keyTtlMs, waiterId,
  -- maxQueued, waiterStaleMs, waiterRegistered, copyPid, copyToken.
  A = {P, ARGV[b + 2], ARGV[b + 1], now, ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8],
    waiter, ARGV[9], ARGV[10], registered, copyPid, copyToken}
  -- One enter's error (a damaged key) is its own: the others' replies, and the writes they made, stand.
  local ok, reply = pcall(enter)
  out[i + 1] = ok and reply or {'err', tostring(reply)}
end
return out
`;

/**
 * A request that will wait behind others of its node: checked as an enter checks (open, cookie lifetime,
 * IP), then counted among the session's waiters now, so the bound holds however the waiting requests are
 * spread. ARGV: P, id, waiterId, maxQueued, staleMs, keyTtlMs, now, cookieTtlMs, ipCheck, ip.
 * Returns 'ok' | 'full' | 'unknown' | 'ip'. Called again on each poll to stay counted.
 */
export const WAIT = `${PRELUDE}
local f = redis.call('HMGET', skey(ARGV[2]), 'st', 'lr', 'ip', 'ct')
if f[1] ~= 'o' or tonumber(ARGV[7]) >= cookieExpiry(f[2], f[4], ARGV[8]) then return 'unknown' end
if ARGV[9] == '1' and f[3] ~= ARGV[10] then return 'ip' end
local wq = P .. 'wq:' .. ARGV[2]
local t = redis.call('TIME')
local realMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', wq, '-inf', realMs - tonumber(ARGV[5]))
if not redis.call('ZSCORE', wq, ARGV[3]) and redis.call('ZCARD', wq) >= tonumber(ARGV[4]) then return 'full' end
redis.call('ZADD', wq, realMs + tonumber(ARGV[5]), ARGV[3])
redis.call('PEXPIRE', wq, ARGV[6])
return 'ok'
`;

/**
 * A new session, evicting the least recently active idle ones cluster-wide while there is no room.
 * ARGV: P, id, ip, now, cap, maxProcs, node, keyTtlMs, cookieTtlMs, waiterStaleMs (the last two absent from
 * nodes of earlier versions; without waiterStaleMs, the places requests wait for are not kept for them).
 * Returns {'ok', pid, victims…} | {'limit'} | {'plimit'} (a refusal evicts nothing).
 */
export const CREATE = `${PRELUDE}
local id, now, node = ARGV[2], tonumber(ARGV[4]), ARGV[7]
local cap, maxProcs = tonumber(ARGV[5]), tonumber(ARGV[6])
local sessionsToFree = redis.call('ZCARD', P .. 'open') - cap + 1
local procs = tonumber(redis.call('GET', P .. 'procs') or '0')
-- The places requests of other sessions wait for (first come first served) are not the newcomer's.
local processesToFree = procs + placeClaimsAhead(nil, nil, maxProcs - procs, ARGV[10]) - maxProcs + 1
local victims = {}
if sessionsToFree > 0 or processesToFree > 0 then
  -- Evicts only what makes room: with the cap lowered below the busy sessions, closing the idle ones
  -- would destroy them and still refuse the newcomer. Each idle session frees one place.
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
        -- Its key expired (a crashed cluster's leftover): forgotten, whatever this request's outcome. It
        -- frees a place only if it was still counted open (a cluster stop's claim may have dropped it),
        -- and the processes it still counts.
        leftovers[#leftovers + 1] = v
        if redis.call('ZSCORE', P .. 'open', v) then sessionsToFree = sessionsToFree - 1 end
        processesToFree = processesToFree - counted(v)
      end
    end
  end
  for _, v in ipairs(leftovers) do forget(v) end
  if sessionsToFree > #victims then return {'limit'} end
  if processesToFree > 0 then return {'plimit'} end
  for _, v in ipairs(victims) do claim(v, 'evicted', node, now, ARGV[8]) end
end
local h = skey(id)
local pid = nextPid()
redis.call('HSET', h, 'ip', ARGV[3], 'cr', now, 'lr', now, 'la', now, 'st', 'o', 'pl', pid, 'tk', 1,
  'k:' .. pid, 'w', 'b:' .. pid, 1, 'o:' .. pid, node, 'd:' .. pid, '')
if ARGV[9] then redis.call('HSET', h, 'ct', ARGV[9] .. '@' .. ARGV[4]) end
redis.call('PEXPIRE', h, ARGV[8])
redis.call('ZADD', P .. 'open', now, id)
countProcesses(id, 1)
addRunning(node, id .. ' ' .. pid, ARGV[8])
touchGlobals(ARGV[8])
return {'ok', pid, unpack(victims)}
`;
