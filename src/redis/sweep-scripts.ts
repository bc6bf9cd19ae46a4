// The scripts that claim many closes at once: the periodic sweep (timeouts, dead nodes' work, gauges) and
// a cluster stop's claim of every open session. Each close they claim then runs as any other
// (close-scripts.ts). Layout: scripts.ts.

import { PRELUDE } from './lua-prelude.js';

/** Open ids the sweep checks per run for a key that expired while its session ran. */
export const OPEN_SCAN_BATCH = 64;
/** How many idle sessions from the head of 'lru' each sweep checks for a key about to expire. */
const NEAR_EXPIRY_WINDOW = 64;

const CLAIM_IF_OPEN = `
-- Claims the close of \`id\` (appended to \`out\`) if it is open; an id whose key expired (a crashed
-- cluster's leftover) is forgotten everywhere instead, as create does.
local function claimIfOpen(id, reason, node, now, ttl, out)
  if redis.call('HGET', skey(id), 'st') == 'o' then
    claim(id, reason, node, now, ttl)
    out[#out + 1] = id
  else
    forget(id)
  end
end
`;

const IS_DEAD = `
-- Whether node \`n\` is dead: it left, or its lease key has been missing for a whole lease (leaseMs) by
-- Redis's own clock (realMs): the first look at a missing key dates its absence (P missing:<n>). A node
-- stalled just past its lease (a GC or VM pause) is not dead yet: its next beat brings the key back.
local function isDead(n, realMs, leaseMs)
  if redis.call('EXISTS', P .. 'node:' .. n) == 1 then return false end
  if redis.call('EXISTS', P .. 'left:' .. n) == 1 then return true end
  local since = redis.call('GET', P .. 'missing:' .. n)
  if not since then
    redis.call('SET', P .. 'missing:' .. n, digits(realMs), 'PX', digits(tonumber(leaseMs) * 10))
    return false
  end
  return realMs - tonumber(since) >= tonumber(leaseMs)
end
`;

export const TAKE_OVER_DEAD = `
-- What a dead node held, taken over by \`node\`: the processes it ran are freed (with the state last saved),
-- the closes it had claimed become \`node\`'s (their ids appended to \`out\`), and it leaves the registry.
-- realMs: Redis's time (ms), kept in \`P swept:<dead>\` for its beats, should it be alive after all; now:
-- the session time of the node taking over (a freed session's last activity).
local function takeOverDead(dead, node, ttl, realMs, now, out)
  -- Told by its next beat, should it be alive after all (stalled, or cut from Redis): the processes it
  -- ran are freed below and may run elsewhere, while its requests and tasks go on there. Kept as long
  -- as the sessions whose processes it frees. (A node that left beats no more.)
  -- It holds Redis's time of the sweep and no beat deletes it: a beat whose reply is lost (the connection
  -- cut just then) must not take it away unread; the node compares it with the last it saw (heartbeat.ts).
  if redis.call('EXISTS', P .. 'left:' .. dead) == 0 then redis.call('SET', P .. 'swept:' .. dead, digits(realMs), 'PX', ttl) end
  redis.call('DEL', P .. 'missing:' .. dead, P .. 'left:' .. dead)
  for _, m in ipairs(redis.call('SMEMBERS', P .. 'nb:' .. dead)) do
    local id, pid = string.match(m, '^(%S+) (%S+)$')
    local h = skey(id)
    if redis.call('EXISTS', h) == 0 then
      -- Its key expired while it ran (a cluster down for longer than the session timeout).
      forget(id)
    elseif redis.call('HGET', h, 'o:' .. pid) == dead then
      -- Its request or task died with its node: the process is free again, with the state last saved.
      redis.call('HSET', h, 'b:' .. pid, '0')
      redis.call('HDEL', h, 'o:' .. pid)
      -- The session was busy until its node died, two leases ago at most: idle from now, as after a
      -- request's end. Not from 'la', the end of the request before: a session idle for most of its
      -- timeout before that request, or whose task ran for longer than it, would be timed out at once.
      if redis.call('HGET', h, 'st') == 'o' then
        redis.call('HSET', h, 'la', digits(now))
        if allFree(h) then markIdle(id, digits(now)) end
      end
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
`;

/**
 * The periodic sweep of one node: claims the sessions whose inactivity deadline passed, frees the
 * processes that dead nodes were running, takes over the closes that dead nodes had claimed, and reads
 * the gauges, and keeps the shared keys alive while the cluster is. ARGV: P, now, timeoutMs, node, limit,
 * nodeLeaseMs, keyTtlMs, nearExpiryMs.
 * Returns {claimed…, '|', takenOver…, '|', open, idle, closing, procs}.
 */
export const SWEEP = `${PRELUDE}${CLAIM_IF_OPEN}${IS_DEAD}${TAKE_OVER_DEAD}
local now, node, limit = tonumber(ARGV[2]), ARGV[4], tonumber(ARGV[5])
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'idle', '-inf', now - tonumber(ARGV[3]), 'LIMIT', 0, limit)) do
  claimIfOpen(id, 'timeout', node, now, ARGV[7], out)
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
    claimIfOpen(id, 'timeout', node, now, ARGV[7], out)
  end
end
out[#out + 1] = '|'
-- A node is dead when it left, or when its lease key has been missing for a whole lease by Redis's own
-- clock: after an outage longer than the lease every key is gone, and the live nodes renew theirs
-- within a third of a lease, so none of them is taken for dead.
local t = redis.call('TIME')
local realMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- A node of an earlier version, renaming a session whose process was freed since (o:<pid> '' rather
-- than absent), files it under a node named '': nobody's, dropped here.
redis.call('DEL', P .. 'nb:')
for _, dead in ipairs(redis.call('SMEMBERS', P .. 'nodes')) do
  if dead ~= node and isDead(dead, realMs, ARGV[6]) then takeOverDead(dead, node, ARGV[7], realMs, now, out) end
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
 * Claims every open session for a cluster shutdown, a batch at a time. ARGV: P, node, now, limit, keyTtlMs,
 * mode ('1': the first batch of the stop, which also takes over what dead nodes held; '2': that takeover
 * alone, no claims; '0': claims alone), nodeLeaseMs.
 * Returns the ids claimed, '|', the ids of closes taken over from dead nodes, then how many nodes have
 * their lease key gone but are not dead yet (missing for less than a lease: killed just before the stop,
 * or stalled), then how many ids the batch looked at (leftovers are dropped, not claimed).
 */
export const CLAIM_ALL = `${PRELUDE}${CLAIM_IF_OPEN}${IS_DEAD}${TAKE_OVER_DEAD}
local out = {}
-- The cluster stops: a dead node's processes are freed and its claimed closes run here, or nobody would
-- run them (their hooks, their teardown): they are no longer open, so the claims below do not reach them.
-- Dead as the sweep says (its key missing for a lease): a node whose key has just expired may be alive,
-- stalled (GC, VM pause, a cut from Redis), its requests still running; it is counted as pending, and
-- the stop asks again (mode '2') until it is dead or beats again.
local taken = {}
local pending = 0
if ARGV[6] ~= '0' then
  local t = redis.call('TIME')
  local realMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local now = tonumber(ARGV[3])
  for _, dead in ipairs(redis.call('SMEMBERS', P .. 'nodes')) do
    if dead ~= ARGV[2] and redis.call('EXISTS', P .. 'node:' .. dead) == 0 then
      if isDead(dead, realMs, ARGV[7]) then takeOverDead(dead, ARGV[2], ARGV[5], realMs, now, taken) else pending = pending + 1 end
    end
  end
end
local batch = {}
if ARGV[6] ~= '2' then batch = redis.call('ZRANGE', P .. 'open', 0, tonumber(ARGV[4]) - 1) end
for _, id in ipairs(batch) do
  claimIfOpen(id, 'shutdown', ARGV[2], tonumber(ARGV[3]), ARGV[5], out)
end
out[#out + 1] = '|'
for _, id in ipairs(taken) do out[#out + 1] = id end
out[#out + 1] = tostring(pending)
-- Last: how many ids this batch looked at (a batch of leftovers claims nothing, yet more may follow).
out[#out + 1] = tostring(#batch)
return out
`;
