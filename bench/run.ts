// `npm run bench [-- options]`: the session-overhead benchmarks in one command.
//   (default)  bench/http.ts (returning visitors, churn), bench/adapters.ts (each framework), then
//              bench/peers.ts (ours against express-session and @fastify/session)
//   --redis    bench/adapters.ts --framework redis: node:http with the sessions in Redis vs bare node:http
// Options shared by both (--duration, --rounds, --connections, --pipelining, --quick) go to each;
// the others go to the script that knows them.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const SHARED = new Set(['--duration', '--rounds', '--connections', '--pipelining', '--quick']);
const WITH_VALUE = new Set(['--duration', '--rounds', '--connections', '--pipelining', '--workload', '--framework']);

function run(script: string, args: readonly string[]): number {
  const path = fileURLToPath(new URL(script, import.meta.url));
  const result = spawnSync(process.execPath, ['--import', 'tsx', path, ...args], { stdio: 'inherit' });
  return result.status ?? 1;
}

/** The options (with their values) whose names `keep` accepts. */
function pick(args: readonly string[], keep: (name: string) => boolean): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const name = arg.split('=')[0]!;
    const takesNext = WITH_VALUE.has(name) && !arg.includes('=');
    if (keep(name)) out.push(arg, ...(takesNext && args[i + 1] !== undefined ? [args[i + 1]!] : []));
    if (takesNext) i++;
  }
  return out;
}

const args = process.argv.slice(2);
if (args.includes('--redis')) {
  process.exitCode = run('./adapters.ts', args);
} else {
  const http = run('./http.ts', pick(args, (name) => name !== '--framework'));
  const adapters = run('./adapters.ts', pick(args, (name) => SHARED.has(name) || name === '--framework'));
  const peers = run('./peers.ts', pick(args, (name) => SHARED.has(name) && name !== '--pipelining'));
  process.exitCode = [http, adapters, peers].find((status) => status !== 0) ?? 0;
}
