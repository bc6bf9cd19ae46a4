// The Lua side of the Redis store. Every decision that reads or writes more than one key is one script:
// Redis runs a script to the end before any other command, so two nodes never both take a process,
// both evict the same session, or both claim a close. ARGV[1] is always the key prefix (P).
//
// Layout:
//   P s:<id>        hash: ip, cr (created), lr (last request start), la (last activity end),
//                   st ('o' open | 'c' closing), rs (close reason), cl (node that claimed the close),
//                   pl (live process ids, space-separated), tk (fencing counter),
//                   per process <pid>: k:<pid> ('w' request process | 't' task), b:<pid> (fencing token of
//                   the request running in it, '0' when free), o:<pid> (node running it; '' or absent when none), d:<pid>
//                   (serialized state), hk:<pid> (its hook has run), n:<pid> (a task's name, given to spawn), mf (the latest 8
//                   old ids forwarding to it: P mv:<old>)
//   P wq:<id>       zset waiter -> Redis time of its last try + its node's waiterStaleMs (requests waiting for the session, any node; dropped once older than the caller's window)
//   P mv:<old>      the new id of a session regenerated while work was under way in it (waiting
//                   requests follow it; releases of requests and tasks still naming the old id land);
//                   none for the caller's own request (its node knows the new id: renames.ts)
//   P open          zset id -> created             (the global cap counts it)
//   P idle          zset id -> last activity end  (timeouts)
//   P lru           zset id -> order of going idle (eviction: least recently active first; P lrun counts)
//   P closing       zset id -> claim time
//   P procs         processes of open sessions (maxConcurrentProcesses)
//   P pn            hash id -> how many of them the session counts (given back if its key expires first)
//   P oscan         where the sweep's check of open ids for expired keys goes on
//   P seq           process id counter: ids r1, r2… are never reused
//   P nodes         set of node ids; P node:<node> (Redis's time of its last beat) expires unless its node renews it (liveness);
//                   P stopping:<node> while it stops; P left:<node> once it left; P missing:<node>
//                   when a sweep first found its lease gone (dead a lease later, if still gone)
//   P nb:<node>     set of "<id> <pid>" a node is running: freed when the node is found dead
//                   (lives by the node's heartbeats; a list made afresh gets the key lifetime at once)
//   P opts          hash of options set at run time (JSON values; null for none), living as the shared keys
//                   do, deleted by the last node's stop
//   channel P ev    'c <id>' close claimed · 'r <id>' a process was released · 'x <id>' closed ·
//                   'N <old> <new>' renamed (regenerate; and 'n <old>' for earlier versions) · 'o <node> <name> <json>' option changed · 'h' a stopping node asks every node to beat now
// Every write to a session refreshes its key's TTL (the longer timeout + grace), so a crashed cluster
// leaves nothing behind; a raised timeout extends the open sessions' keys at once (EXTEND_KEYS).

import { CLAIM, FINISH, HOOKED, LEFT, LOAD_CLOSING, RENAME } from './close-scripts.js';
import { CLAIM_ALL, SWEEP } from './sweep-scripts.js';
import { EXTEND_KEYS, HEARTBEAT, SET_OPTION } from './cluster-scripts.js';
import { REPAIR_FIND, REPAIR_FREE } from './repair-scripts.js';
import { RELEASE, SPAWN } from './process-scripts.js';
import { CREATE, ENTER_MANY, WAIT } from './request-scripts.js';

export const STORE_SCRIPTS = {
  lwsEnterMany: ENTER_MANY,
  lwsWait: WAIT,
  lwsCreate: CREATE,
  lwsRelease: RELEASE,
  lwsSpawn: SPAWN,
  lwsClaim: CLAIM,
  lwsSweep: SWEEP,
  lwsRepairFind: REPAIR_FIND,
  lwsRepairFree: REPAIR_FREE,
  lwsClaimAll: CLAIM_ALL,
  lwsLoadClosing: LOAD_CLOSING,
  lwsHooked: HOOKED,
  lwsFinish: FINISH,
  lwsLeft: LEFT,
  lwsRename: RENAME,
  lwsHeartbeat: HEARTBEAT,
  lwsSetOption: SET_OPTION,
  lwsExtendKeys: EXTEND_KEYS,
} as const;

export type StoreScriptName = keyof typeof STORE_SCRIPTS;
