// The scripts of a process's writes (processes.ts): a request's or task's end saves and releases its
// process; a spawned task adds one. Layout of the keys: scripts.ts.

import { TOUCH_LOCKS } from './lock-scripts.js';
import { PRELUDE } from './lua-prelude.js';

/**
 * The ends of requests and tasks that finished about the same time on one node, in one call: each saves
 * its state if its token still holds and frees its process. A stale token (the session closed and its
 * process was freed or its key deleted) writes nothing: no resurrection; a repeat of a release that
 * landed is stale too, so a retry is harmless.
 * ARGV: P, count, node, keyTtlMs, then per release three: 'pid token now end' (the node's own
 * values, none with a space; end: 0 the process stays, 1 it leaves its open session, 2 it leaves and
 * takes its session along when it was the only one: see ProcessEnd), id, state ('' for none: a state
 * saved is never empty).
 * A process that stays in its open session has its record locks renewed with the session's key.
 * Returns one of 'o' | 'c' (released; the session's state) | 'stale' | 'gone' per release, in order, or
 * 'err <message>' for a release that raised an error.
 */
export const RELEASE = `${PRELUDE}${TOUCH_LOCKS}
local node, ttl = ARGV[3], ARGV[4]
local function release(a)
  local pid, token, now, ends = string.match(ARGV[a], '^(%S+) (%S+) (%S+) (%S+)$')
  local id, state = ARGV[a + 1], ARGV[a + 2]
  local h = skey(id)
  local f = redis.call('HMGET', h, 'b:' .. pid, 'st', 'pl')
  if not f[1] then
    -- Regenerated (on another node, or before this node heard of it) while this ran: it is under the new id.
    local to = renamedTo(id)
    if to then
      id, h = to, skey(to)
      f = redis.call('HMGET', h, 'b:' .. pid, 'st', 'pl')
    else
      -- Gone, maybe after renames that moved this node's entry to a new id (a session renamed, then
      -- closed, before this late release): those entries go too, or they would stay until the node dies.
      local hop = id
      for _ = 1, 8 do
        hop = redis.call('GET', P .. 'mv:' .. hop)
        if not hop then break end
        redis.call('SREM', P .. 'nb:' .. node, hop .. ' ' .. pid)
      end
    end
  end
  redis.call('SREM', P .. 'nb:' .. node, id .. ' ' .. pid)
  local b, st = f[1], f[2]
  if not b then return 'gone' end
  if b ~= token then return 'stale' end
  local others = {}
  if f[3] then for p in string.gmatch(f[3], '%S+') do if p ~= pid then others[#others + 1] = p end end end
  if ends == '2' and st == 'o' then
    -- A new session whose first init failed: its id reached no client, so it goes with its process, and
    -- with any task init spawned (kept, it would hold a place under the cap until evicted or timed out,
    -- as if it had lived). A task's later release finds it gone; a spawn that had not landed, closed.
    forget(id)
    redis.call('DEL', h, P .. 'wq:' .. id)
    return 'gone'
  elseif ends ~= '0' and st == 'o' then
    -- A task that ended on its own ends its process (no hook: its session is not closing), as does an
    -- init that failed.
    redis.call('HSET', h, 'pl', table.concat(others, ' '), 'la', now)
    redis.call('HDEL', h, 'b:' .. pid, 'o:' .. pid, 'd:' .. pid, 'k:' .. pid, 'n:' .. pid)
    countProcesses(id, -1)
  elseif ends ~= '0' and state == '' and (redis.call('HGET', h, 'd:' .. pid) or '') == '' then
    -- A process whose init failed in a session closing meanwhile: it never had a context, so the close
    -- does not hook it (its place stopped counting at the claim).
    redis.call('HSET', h, 'pl', table.concat(others, ' '))
    redis.call('HDEL', h, 'b:' .. pid, 'o:' .. pid, 'd:' .. pid, 'k:' .. pid, 'n:' .. pid)
  else
    -- One write: the process free and nobody's ('' in o:), its state if given, the session's last
    -- activity if it is open.
    local fields = {'b:' .. pid, '0', 'o:' .. pid, ''}
    if state ~= '' then fields[5] = 'd:' .. pid; fields[6] = state end
    if st == 'o' then fields[#fields + 1] = 'la'; fields[#fields + 1] = now end
    redis.call('HSET', h, unpack(fields))
  end
  if st == 'o' then
    local free = true
    if #others > 0 then
      local fields = {}
      for i, p in ipairs(others) do fields[i] = 'b:' .. p end
      for _, v in ipairs(redis.call('HMGET', h, unpack(fields))) do if v ~= '0' then free = false end end
    end
    if free then markIdle(id, now) end
    redis.call('PEXPIRE', h, ttl)
    -- A live session's locks outlive its idle time: they take its key's new life. Every lock the
    -- process id holds, also one its saved state does not list (taken by a process object kept past
    -- its request, maybe on another node), so none lapses while its session lives; and those of the
    -- session's other processes (as the memory store renews every process of the session holding
    -- locks): requests one at a time all run on its first free process, and a lock a second process
    -- took would otherwise keep the expiry it was taken with. Process ids are the engine's own
    -- ([0-9a-z], t<uuid>): the sets' names need no escaping (locks.ts redisProcessLocksKey).
    if ends == '0' then
      others[#others + 1] = pid
      for _, p in ipairs(others) do touchLocks(P .. 'plocks:' .. p, p, ttl) end
    end
  end
  if st ~= 'o' or redis.call('EXISTS', P .. 'wq:' .. id) == 1 then redis.call('PUBLISH', P .. 'ev', 'r ' .. id) end
  return st
end
local out = {}
for i = 0, tonumber(ARGV[2]) - 1 do
  -- One release's error is its own: the others of its call land.
  local ok, outcome = pcall(release, 5 + 3 * i)
  out[i + 1] = ok and outcome or ('err ' .. tostring(outcome))
end
return out
`;

/**
 * A spawned task's process (its id made by the spawning node). ARGV: P, id, node, maxProcs, keyTtlMs, pid,
 * name (the name given to spawn: a close's hook on any node sees it; nodes of earlier versions pass none),
 * waiterStaleMs (nodes of earlier versions pass none: the places requests wait for are not kept for them).
 * Returns {'ok', token} | {'closed'} | {'plimit'}.
 */
export const SPAWN = `${PRELUDE}
local id, node = ARGV[2], ARGV[3]
local h = skey(id)
if redis.call('EXISTS', h) == 0 then
  -- Regenerated before this node heard of it: the task joins the session under its new id.
  local to = renamedTo(id)
  if to then id, h = to, skey(to) end
end
if redis.call('HGET', h, 'st') ~= 'o' then return {'closed'} end
local procs, maxProcs = tonumber(redis.call('GET', P .. 'procs') or '0'), tonumber(ARGV[4])
-- The places requests wait for (first come first served) are theirs first (ARGV[8]: nodes of earlier versions pass none).
if procs + placeClaimsAhead(nil, nil, maxProcs - procs, ARGV[8]) >= maxProcs then return {'plimit'} end
local pid = ARGV[6]
local list = plist(h)
list[#list + 1] = pid
local token = redis.call('HINCRBY', h, 'tk', 1)
redis.call('HSET', h, 'pl', table.concat(list, ' '), 'k:' .. pid, 't', 'b:' .. pid, token, 'o:' .. pid, node, 'd:' .. pid, '')
if ARGV[7] then redis.call('HSET', h, 'n:' .. pid, ARGV[7]) end
countProcesses(id, 1)
markBusy(id)
addRunning(node, id .. ' ' .. pid, ARGV[5])
redis.call('PEXPIRE', h, ARGV[5])
return {'ok', tostring(token)}
`;
