// What replies a node never read leave behind (a connection cut after Redis ran a script): a process its
// enter, create or spawn took that no work of the node runs, a close it claimed that it does not run.
// The other nodes' sweeps free such things only for a node that is gone: the node repairs its own, in
// two steps (sweep.ts). Layout of the keys: scripts.ts.

import { PRELUDE } from './lua-prelude.js';

/**
 * Step 1: what may be left. ARGV: P, node, then the process ids this node runs or has a write of on its
 * way (kept). Returns {'<id> <pid> <token>' of each process taken by this node and not kept, '|', the
 * closes this node claimed}. Nothing is written but the node's own list of what it ran (stale entries).
 */
export const REPAIR_FIND = `${PRELUDE}
local node = ARGV[2]
local keep = {}
for i = 3, #ARGV do keep[ARGV[i]] = true end
local out = {}
local nb = P .. 'nb:' .. node
for _, m in ipairs(redis.call('SMEMBERS', nb)) do
  local id, pid = string.match(m, '^(%S+) (%S+)$')
  if not keep[pid] then
    local f = redis.call('HMGET', skey(id), 'o:' .. pid, 'b:' .. pid)
    if f[1] ~= node or not f[2] or f[2] == '0' then
      redis.call('SREM', nb, m)
    else
      out[#out + 1] = id .. ' ' .. pid .. ' ' .. f[2]
    end
  end
end
out[#out + 1] = '|'
for _, id in ipairs(redis.call('ZRANGE', P .. 'closing', 0, -1)) do
  if redis.call('HGET', skey(id), 'cl') == node then out[#out + 1] = id end
end
return out
`;

/**
 * Step 2, once the node has read every reply that came before step 1's (so any work that took one of
 * those processes runs and is kept by now): frees each one still taken by this node with the same
 * token. A request's process goes back free with the state last saved (as a dead node's); a task's that
 * never got its context (its spawn's reply lost) leaves the session. ARGV: P, node, then '<id> <pid>
 * <token>' each. Returns how many were freed.
 */
export const REPAIR_FREE = `${PRELUDE}
local node = ARGV[2]
local freed = 0
for i = 3, #ARGV do
  local id, pid, token = string.match(ARGV[i], '^(%S+) (%S+) (%S+)$')
  local listed = id
  if redis.call('EXISTS', skey(id)) == 0 then
    -- Regenerated since step 1: the process went along to the new id.
    local to = renamedTo(id)
    if to then id = to end
  end
  local h = skey(id)
  local f = redis.call('HMGET', h, 'o:' .. pid, 'b:' .. pid, 'k:' .. pid, 'd:' .. pid, 'st')
  if f[1] == node and f[2] == token then
    if f[3] == 't' and (f[4] or '') == '' then
      -- A task that never ran leaves its session, open or closing (no hook: it never had a context);
      -- a closing session's places stopped counting at its claim.
      local others = {}
      for _, p in ipairs(plist(h)) do if p ~= pid then others[#others + 1] = p end end
      redis.call('HSET', h, 'pl', table.concat(others, ' '))
      redis.call('HDEL', h, 'b:' .. pid, 'o:' .. pid, 'd:' .. pid, 'k:' .. pid, 'n:' .. pid)
      if f[5] == 'o' then countProcesses(id, -1) end
    elseif token == '1' and f[5] == 'o' and redis.call('HGET', h, 'tk') == '1' and #plist(h) == 1 then
      -- Still taken by its CREATE (the session's first and only token: no request has entered it since):
      -- that create's reply was lost before init ran, so its id reached no client. It goes, as when a
      -- first init fails; kept, it would idle to a hook on nothing, a 'close' with no 'create'.
      forget(id)
      redis.call('DEL', h, P .. 'wq:' .. id)
    else
      redis.call('HSET', h, 'b:' .. pid, '0')
      redis.call('HDEL', h, 'o:' .. pid)
    end
    if f[5] == 'o' and redis.call('EXISTS', h) == 1 and allFree(h) then markIdle(id, redis.call('HGET', h, 'la')) end
    redis.call('PUBLISH', P .. 'ev', 'r ' .. id)
    freed = freed + 1
    redis.call('SREM', P .. 'nb:' .. node, id .. ' ' .. pid, listed .. ' ' .. pid)
  elseif f[1] ~= node then
    -- Not this node's any more (freed, taken elsewhere): its entry goes. Taken here again (another
    -- token) it is this node's work now, and its entry stays.
    redis.call('SREM', P .. 'nb:' .. node, id .. ' ' .. pid, listed .. ' ' .. pid)
  end
end
return freed
`;
