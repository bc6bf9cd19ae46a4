// The scripts of the cluster's upkeep: node heartbeats, options set at run time, and the lifetime of
// every session's keys when a timeout is raised. Layout: scripts.ts.

import { PRELUDE } from './lua-prelude.js';

/** Open sessions whose keys one EXTEND_KEYS call reaches (about: ZSCAN's COUNT is a hint). */
const EXTEND_BATCH = 256;

/**
 * A node says it is alive (and, once it stops, that it is stopping), and keeps the keys of the sessions
 * with work under way on it alive. ARGV: P, node, leaseMs, stopping, keyTtlMs.
 * Returns { others, 0, 0, 0, swept }: how many other nodes are alive and not stopping (nodes stopping
 * together all see none, so the sessions close when the whole cluster goes down, and each is claimed
 * once), and Redis's time (ms) of the last sweep that took this node for dead (P swept:<n>, set by SWEEP, never
 * deleted by a beat: one whose reply is lost would take it away unread), else 0.
 * A node's lease key holds Redis's time (ms) of its last beat. Asked by a stopping node (ARGV[6]: a Redis
 * time, or ''), the reply is { confirmed, unconfirmed, now, waitMs, swept }: nodes that beat since ARGV[6]
 * (or whose key holds no time: nodes of earlier versions), and nodes whose key lives on without a beat
 * since (a node killed within its lease looks alive until its key expires, within waitMs: the longest
 * PTTL of theirs).
 */
export const HEARTBEAT = `${PRELUDE}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', P .. 'node:' .. ARGV[2], digits(now), 'PX', ARGV[3])
redis.call('DEL', P .. 'missing:' .. ARGV[2])
local swept = tonumber(redis.call('GET', P .. 'swept:' .. ARGV[2]) or '0')
if ARGV[4] == '1' then redis.call('SET', P .. 'stopping:' .. ARGV[2], '1', 'PX', ARGV[3]) end
redis.call('SADD', P .. 'nodes', ARGV[2])
-- The shared keys live as long as their sessions may (a cluster that is gone leaves nothing behind).
touchGlobals(ARGV[5])
redis.call('PEXPIRE', P .. 'nb:' .. ARGV[2], digits(tonumber(ARGV[3]) * 100))
-- A session with work under way here (a request, a spawned task) is busy, never timed out, but its keys
-- live a key lifetime from their last write: work running longer writes nothing, and would lose its
-- session (and its locks) under it. Each beat gives them a full lifetime again.
-- (Once per session: a session runs several processes here, and each extension walks all their locks.)
local extended = {}
for _, running in ipairs(redis.call('SMEMBERS', P .. 'nb:' .. ARGV[2])) do
  local id = string.match(running, '^(%S+) ')
  if id and not extended[id] then
    extended[id] = true
    extendSession(id, tonumber(ARGV[5]))
  end
end
local since = tonumber(ARGV[6] or '') or 0
local others, unconfirmed, waitMs = 0, 0, 0
for _, n in ipairs(redis.call('SMEMBERS', P .. 'nodes')) do
  if n ~= ARGV[2] and redis.call('EXISTS', P .. 'stopping:' .. n) == 0 then
    local beat = redis.call('GET', P .. 'node:' .. n)
    if beat then
      local at = tonumber(beat) or 0
      if ARGV[4] == '1' and since > 0 and at > 1 and at < since then
        -- Its key lives as long as its own node's lease said (nodes may run with different leases).
        unconfirmed = unconfirmed + 1
        waitMs = math.max(waitMs, redis.call('PTTL', P .. 'node:' .. n))
      else
        others = others + 1
      end
    end
  end
end
-- Options set at run time go with the last node's stop (4D's WEB SET OPTION does not outlive the web
-- server); else they live as the shared keys do (touchGlobals), a stalled node's heartbeats included.
if ARGV[4] == '1' and others + unconfirmed == 0 then redis.call('DEL', P .. 'opts') end
if ARGV[4] == '1' then return { others, unconfirmed, now, waitMs, swept } end
return { others, 0, 0, 0, swept }
`;

/**
 * An option set on one node applies to all, unless the cluster holds the value of another option it
 * cannot go with (ARGV[6] = ARGV[7]; '' for none): two nodes set such a pair at about the same time.
 * Each write of a name gets a newer version of it (P optv), announced with it ('o <node>@<version> …';
 * a node of an earlier version reads '<node>@<version>' as a node that is not itself): a node applies
 * only a version newer than the one it holds, so two nodes setting one option at about the same time end
 * with the value Redis took last, whatever order the replies and announcements reach them in. A version
 * is Redis's time in microseconds (one more than the last if that is not newer): versions lost with
 * P optv (a Redis restart without persistence, a flush) while nodes stay up still come out newer.
 * ARGV: P, node, name, json, keyTtlMs, conflicting name, its conflicting json. Returns the version, or 0 refused.
 */
export const SET_OPTION = `${PRELUDE}
if ARGV[6] ~= nil and ARGV[6] ~= '' and redis.call('HGET', P .. 'opts', ARGV[6]) == ARGV[7] then return 0 end
redis.call('HSET', P .. 'opts', ARGV[3], ARGV[4])
local t = redis.call('TIME')
local version = math.max(tonumber(t[1]) * 1000000 + tonumber(t[2]), tonumber(redis.call('HGET', P .. 'optv', ARGV[3]) or '0') + 1)
redis.call('HSET', P .. 'optv', ARGV[3], digits(version))
redis.call('PEXPIRE', P .. 'opts', ARGV[5])
redis.call('PEXPIRE', P .. 'optv', ARGV[5])
redis.call('PUBLISH', P .. 'ev', 'o ' .. ARGV[2] .. '@' .. digits(version) .. ' ' .. ARGV[3] .. ' ' .. ARGV[4])
return digits(version)
`;

/**
 * A timeout was raised: the keys of the open sessions of one ZSCAN step of 'open' (their hash, each
 * process's lock set and the locks in it) and the shared keys live at least ttlMs from now; otherwise
 * they would expire by the timeouts of their last write, taking live sessions with them (no hook: their
 * state goes with the key). Never shortens a life. ZSCAN returns every session open for the whole walk,
 * whatever closes or is made meanwhile (one made meanwhile has the new lifetime already).
 * ARGV: P, ttlMs, cursor ('0' to start). Returns the next cursor ('0': done).
 */
export const EXTEND_KEYS = `${PRELUDE}
local ttl = tonumber(ARGV[2])
local step = redis.call('ZSCAN', P .. 'open', ARGV[3], 'COUNT', ${EXTEND_BATCH})
local found = step[2]
for i = 1, #found, 2 do extendSession(found[i], ttl) end
if ARGV[3] == '0' then touchGlobals(ttl) end
return step[1]
`;
