import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { STORE_SCRIPTS } from '/work/main/src/redis/scripts.js';
const r = new Redis('redis://127.0.0.1:6379');
const names = new Map(Object.entries(STORE_SCRIPTS).map(([n, s]) => [createHash('sha1').update(s).digest('hex'), n]));
const log = await r.call('SLOWLOG', 'GET', '200000') as any[];
const agg = new Map<string, { n: number; us: number }>();
for (const e of log) { const args = e[3] as string[]; const k = args[0]?.toLowerCase() === 'evalsha' ? names.get(args[1]!) ?? args[1]! : args[0]!; const a = agg.get(k) ?? { n: 0, us: 0 }; a.n++; a.us += Number(e[2]); agg.set(k, a); }
for (const [k, a] of [...agg].sort((x, y) => y[1].us - x[1].us)) console.log(k.padEnd(20), a.n, (a.us / a.n).toFixed(2), 'us/call');
await r.quit();
