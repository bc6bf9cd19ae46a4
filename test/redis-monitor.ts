// MONITOR over a socket of its own, read by hand: ioredis's monitor() can throw "Command queue state
// error" when monitor lines arrive in the same read as MONITOR's +OK (other clients busy on the same
// Redis, as parallel test files are), so a check of what a store sends would fail for the client's sake.
import { connect, type Socket } from 'node:net';

/**
 * Every command Redis runs from the moment this resolves, as its arguments joined by spaces (each as
 * the bytes Redis got, read as Latin-1): to check what a store sends, e.g. that no client-made value
 * reaches a key name. `stop()` ends the watching.
 */
export async function monitorCommands(url: string): Promise<{ readonly seen: string[]; stop(): void }> {
  const { hostname, port, password, username } = new URL(url);
  const socket: Socket = connect({ host: hostname.replace(/^\[|\]$/g, ''), port: Number(port || 6379) });
  socket.setEncoding('latin1');
  const seen: string[] = [];
  let buffered = '';
  let ok!: () => void;
  let failed!: (error: Error) => void;
  const started = new Promise<void>((resolve, reject) => { ok = resolve; failed = reject; });
  socket.on('error', (error) => failed(error));
  socket.on('data', (chunk: string) => {
    buffered += chunk;
    let end: number;
    while ((end = buffered.indexOf('\r\n')) >= 0) {
      const line = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      if (line === '+OK') ok();
      else if (line.startsWith('-')) failed(new Error(`MONITOR: ${line.slice(1)}`));
      else if (line.startsWith('+')) seen.push(monitorArgs(line).join(' '));
    }
  });
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
  if (password !== '') socket.write(`AUTH ${username === '' ? '' : `${decodeURIComponent(username)} `}${decodeURIComponent(password)}\r\n`);
  socket.write('MONITOR\r\n');
  await started;
  return { seen, stop: () => socket.destroy() };
}

const ESCAPED: Record<string, string> = { n: '\n', r: '\r', t: '\t', a: '\x07', b: '\b' };

/**
 * The arguments of one MONITOR line (`+<time> [<db> <address>] "cmd" "arg" …`), each quoted by Redis
 * with `\\`, `\"`, `\n`, `\r`, `\t`, `\a`, `\b` and `\xHH` escapes, unescaped.
 */
export function monitorArgs(line: string): string[] {
  const args: string[] = [];
  let i = line.indexOf('] ');
  if (i < 0) return args;
  for (i += 2; i < line.length; i++) {
    if (line[i] !== '"') continue;
    let arg = '';
    for (i++; i < line.length && line[i] !== '"'; i++) {
      if (line[i] !== '\\') {
        arg += line[i];
        continue;
      }
      const next = line[i + 1] ?? '';
      if (next === 'x') {
        arg += String.fromCharCode(Number.parseInt(line.slice(i + 2, i + 4), 16));
        i += 3;
      } else {
        arg += ESCAPED[next] ?? next;
        i += 1;
      }
    }
    args.push(arg);
  }
  return args;
}
