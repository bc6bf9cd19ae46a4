// `npm start`'s process, as an operator stops it: SIGTERM runs every session's close hook before exit;
// a second signal exits at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import * as http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { request } from './helpers.js';
import { ADMIN_TOKEN, Client } from './demo-client.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const USERS = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank'];

interface Child {
  readonly process: ChildProcess;
  readonly url: string;
  readonly dbPath: string;
  output(): { stdout: string; stderr: string };
  /** Resolves with the exit code once the process has ended. */
  readonly exited: Promise<number | null>;
  dispose(): void;
}

/** Starts `demo/server.ts` as `npm start` does, on a free loopback port and a temporary database. */
async function startChild(): Promise<Child> {
  const dir = mkdtempSync(join(tmpdir(), 'stockroom-child-'));
  const dbPath = join(dir, 'stockroom.sqlite');
  const child = spawn(process.execPath, ['--import', 'tsx', 'demo/server.ts'], {
    cwd: ROOT,
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', DEMO_DB: dbPath, ADMIN_TOKEN },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  const url = await new Promise<string>((resolve, reject) => {
    const check = (): void => {
      const found = /App\s+(http:\/\/\S+)/.exec(stdout)?.[1];
      if (found !== undefined) resolve(found);
    };
    child.stdout.on('data', check);
    void exited.then((code) => reject(new Error(`demo exited (${code}) before listening:\n${stdout}\n${stderr}`)));
  });
  return {
    process: child, url, dbPath, exited,
    output: () => ({ stdout, stderr }),
    dispose: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function until(what: string, condition: () => Promise<boolean> | boolean): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.fail(`never happened: ${what}`);
}

test('SIGTERM closes every open session through its hook: N sessions, N rows saved, exit code 0', async () => {
  const N = 24;
  const child = await startChild();
  try {
    const clients = Array.from({ length: N }, () => new Client(child.url));
    await Promise.all(clients.map(async (client, i) => {
      await client.signIn(USERS[i % USERS.length] ?? 'alice');
      await client.post('/cart', { action: 'add', id: String(i + 1) });
    }));
    const ids = new Set(clients.map((c) => c.sessionId));
    assert.equal(ids.size, N);

    child.process.kill('SIGTERM');
    assert.equal(await child.exited, 0, child.output().stderr);
    assert.match(child.output().stdout, new RegExp(`SIGTERM: stopping\\. Closing ${N} session\\(s\\)[\\s\\S]*Stopped: ${N} session\\(s\\) closed and saved\\.`));

    const db = new Database(child.dbPath, { readonly: true });
    try {
      const rows = db.prepare("SELECT session_id AS id, login, saved FROM close_log WHERE reason = 'shutdown'").all() as { id: string; login: string | null; saved: string }[];
      assert.equal(rows.length, N);
      assert.deepEqual(new Set(rows.map((r) => r.id)), ids, 'one row per session, each saved by its own hook');
      for (const row of rows) assert.match(row.saved, /^cart 1 line \(1 pcs\)/, row.id);
      const prefs = db.prepare("SELECT COUNT(*) FROM prefs WHERE saved_reason = 'shutdown'").pluck().get();
      assert.equal(prefs, USERS.length);
    } finally {
      db.close();
    }
  } finally {
    child.dispose();
  }
});

test('a second SIGTERM while sessions are still closing exits at once with a message saying what was not saved', async () => {
  const child = await startChild();
  try {
    await new Client(child.url).signIn('alice');
    // A request whose body never finishes keeps its session busy: the first stop waits for it.
    const stuck = http.request(`${child.url}/login`, { method: 'POST', agent: false, headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': '100' } });
    stuck.on('error', () => {}); // the connection dies with the process
    stuck.write('user=');
    const busy = async (): Promise<boolean> => /^lws_sessions_busy 1$/m.test((await request(child.url, { path: '/metrics', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).body);
    await until('the stuck request runs', busy);

    child.process.kill('SIGTERM');
    await until('the first SIGTERM is acknowledged', () => child.output().stdout.includes('SIGTERM: stopping'));
    child.process.kill('SIGTERM');
    assert.equal(await child.exited, 1);
    assert.match(child.output().stderr, /SIGTERM again: exiting now, without waiting; 1 session\(s\) had not finished closing and may not be saved\./);
    assert.doesNotMatch(child.output().stdout, /Stopped:/);
  } finally {
    child.dispose();
  }
});
