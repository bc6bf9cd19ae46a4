// docs/security.md checked as an attacker would, over real servers on loopback (node:http's createServer
// and Express) and through the engine: what a client can send in its Cookie and X-Forwarded-For headers,
// what a refused request gets back, and which session id a store that makes key names of ids is ever
// asked about (Redis; the memory store only looks a value up in its Map).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import express from 'express';
import { SessionEngine, type SessionError, type SessionVars } from '../src/index.js';
import { sessions } from '../src/adapters/express/index.js';
import { readBody } from '../src/adapters/node/index.js';
import { readSessionId } from '../src/http/cookie.js';
import { createRedisStore } from '../src/redis/index.js';
import { shapedSessionId } from '../src/session-id.js';
import { listen } from './contract/app.js';
import { eventually, request, sessionIdOf, startServer, type TestServer } from './helpers.js';
import { redisForTest, watchCommands } from './redis-support.js';

const GUARD = { timeout: 10_000 };

type Start = (engine: SessionEngine<SessionVars>) => Promise<TestServer>;

const SERVERS: [string, Start][] = [
  ['node:http', (engine) => startServer(engine, async (req, res) => {
    if (req.url === '/body') await readBody(req, { maxBytes: 10 });
    res.end('ok');
  })],
  ['express', async (engine) => {
    const app = express();
    app.use(sessions(engine));
    app.post('/body', async (req, res, next) => {
      try {
        await readBody(req, { maxBytes: 10 });
        res.send('ok');
      } catch (error) {
        next(error);
      }
    });
    app.all('/', (_req, res) => { res.send('ok'); });
    const server = await listen(app.listen(0, '127.0.0.1'));
    return { url: server.url, port: Number(new URL(server.url).port), close: server.close };
  }],
];

// 36 characters once percent-decoded, none of them an id's: CR LF, markup, spaces, non-ASCII, NUL.
const HOSTILE_36 = [
  `%0D%0AINJECTED <img src=x onerror=1>${'x'.repeat(4)}`,
  `%00${'a'.repeat(35)}`,
  `<script>alert(document.cookie)</scri`,
  `${'é'.repeat(36)}`,
  `${'%C3%A9'.repeat(36)}`,
  `a b c d e f g h i j k l m n o p q r `,
];

test('shapedSessionId: a 36-character value that is not an id is no id (the Redis store never makes a key of it)', () => {
  for (const value of HOSTILE_36) {
    // The cookie reading keeps what has 36 characters once trimmed and decoded; none of them is an id.
    assert.equal(shapedSessionId(decodeURIComponent(value)), undefined, value);
    assert.equal(shapedSessionId(readSessionId(`4DSID=${value}`, '4DSID')), undefined, value);
  }
  // An id in upper case, or with its dashes moved, can never name a session (ids are lower-case UUIDs).
  const id = '0f8fad5b-d9cb-469f-a165-70867728950e';
  assert.equal(shapedSessionId(id), id);
  assert.equal(shapedSessionId(id.toUpperCase()), undefined);
  assert.equal(shapedSessionId(`${id.replaceAll('-', '')}----`), undefined);
  // What the cookie reading keeps: trimmed, percent-decoded, first pair of the name.
  assert.equal(readSessionId(`4DSID= ${id}\t`, '4DSID'), id);
  assert.equal(readSessionId(`4DSID=${id.replace('-', '%2D')}`, '4DSID'), id);
  assert.equal(readSessionId(`x=1; 4DSID=${id}; 4DSID=1f8fad5b-d9cb-469f-a165-70867728950e`, '4DSID'), id);
});

test('Redis store: a client\'s 36 bytes of its own choosing never reach Redis, nor a refusal\'s sessionId when Redis is down', { timeout: 20_000 }, async (t) => {
  const r = await redisForTest(t);
  if (r === undefined) return;
  const { seen, stop: stopWatching } = await watchCommands(r);
  const client = await r.client();
  const engine = new SessionEngine({ store: createRedisStore({ redis: client, prefix: r.prefix, onStop: 'close' }) });
  const errors: SessionError[] = [];
  engine.on('error', (error) => errors.push(error));
  const server = await startServer(engine, (_req, res) => { res.end('ok'); });
  try {
    const id = sessionIdOf(await request(server.url))!;
    assert.equal(sessionIdOf(await request(server.url, { cookie: `4DSID=${id}` })), id, 'a real id still names its session');
    for (const value of HOSTILE_36) {
      const answer = await request(server.url, { cookie: `4DSID=${value}` });
      assert.equal(answer.status, 200);
      assert.notEqual(sessionIdOf(answer), id);
    }
    assert.ok(await eventually(() => seen.some((line) => line.includes(id))), 'the monitor sees the store\'s commands');
    const hostile = HOSTILE_36.map((value) => decodeURIComponent(value));
    assert.deepEqual(seen.filter((line) => hostile.some((value) => line.includes(value))), [], 'no command carried a client-made value');
    // Redis gone: the refusal names no client-made value either.
    client.disconnect();
    const refused = await request(server.url, { cookie: `4DSID=${HOSTILE_36[0]!}` });
    assert.equal(refused.status, 503);
    for (const error of errors) assert.ok(error.sessionId === undefined || !hostile.includes(error.sessionId), error.message);
  } finally {
    stopWatching();
    await engine.stop().catch(() => {});
    await server.close();
  }
});

for (const [name, start] of SERVERS) {
  test(`${name}: ids differing in case, quoted, or shadowed by a first pair never reach the live session; spaces around it do`, GUARD, async () => {
    const engine = new SessionEngine({});
    const server = await start(engine);
    try {
      const id = sessionIdOf(await request(server.url))!;
      const sessionFor = async (cookie: string): Promise<string | undefined> => sessionIdOf(await request(server.url, { cookie }));
      assert.equal(await sessionFor(`4DSID=${id}`), id);
      assert.equal(await sessionFor(`4DSID=  ${id}  `), id);
      assert.notEqual(await sessionFor(`4DSID=${id.toUpperCase()}`), id);
      assert.notEqual(await sessionFor(`4DSID="${id}"`), id);
      // First pair wins: 300 junk 4DSID pairs before the real one give a new session, never an error.
      const junk = Array.from({ length: 300 }, (_, i) => `4DSID=x${i}`).join('; ');
      const shadowed = await request(server.url, { cookie: `${junk}; 4DSID=${id}` });
      assert.equal(shadowed.status, 200);
      assert.notEqual(sessionIdOf(shadowed), id);
      // A huge cookie Node accepts is read; one over maxHeaderSize is Node's 431, with no cookie set.
      assert.equal((await request(server.url, { cookie: `a=${'b'.repeat(15_000)}; 4DSID=${id}` })).status, 200);
      const tooBig = await request(server.url, { cookie: `4DSID=${'a'.repeat(20_000)}` });
      assert.equal(tooBig.status, 431);
      assert.deepEqual(tooBig.setCookies, []);
    } finally {
      await engine.stop();
      await server.close();
    }
  });

  test(`${name}: another address gets 400, no cookie, no id in the body, and the session is untouched; X-Forwarded-For is ignored without trustProxy`, GUARD, async () => {
    const engine = new SessionEngine({ maxSessions: 1 });
    const server = await start(engine);
    try {
      const id = sessionIdOf(await request(server.url))!;
      const before = engine.sessions()[0];
      for (const headers of [{}, { 'x-forwarded-for': '127.0.0.1' }]) {
        const refused = await request(server.url, { cookie: `4DSID=${id}`, localAddress: '127.0.0.2', headers });
        assert.equal(refused.status, 400);
        assert.deepEqual(refused.setCookies, []);
        assert.equal(refused.body, 'Bad Request: session belongs to another IP address\n');
        assert.ok(!refused.body.includes(id) && !refused.body.includes('127.0.0'));
      }
      assert.deepEqual(engine.sessions(), [before], 'the session is there, unchanged, and nothing was created');
      // trustProxy: true trusts the leftmost entry, which the client writes: the documented hole.
      engine.setOption('trustProxy', true);
      assert.equal((await request(server.url, { cookie: `4DSID=${id}`, localAddress: '127.0.0.2', headers: { 'x-forwarded-for': '127.0.0.1' } })).status, 200);
    } finally {
      await engine.stop();
      await server.close();
    }
  });

  test(`${name}: 413 and 503 answers: fixed bodies; 503 refusals set no cookie`, GUARD, async () => {
    const engine = new SessionEngine({});
    const server = await start(engine);
    try {
      const id = sessionIdOf(await request(server.url))!;
      const tooLarge = await request(server.url, { method: 'POST', path: '/body', cookie: `4DSID=${id}`, body: 'x'.repeat(50) });
      assert.equal(tooLarge.status, 413);
      assert.equal(tooLarge.body, 'Payload Too Large: request body too large\n');
      // The session exists (the handler ran in it): its cookie is refreshed like on any answer.
      assert.equal(sessionIdOf(tooLarge), id);
      await engine.stop();
      const stopped = await request(server.url, { cookie: `4DSID=${id}` });
      assert.equal(stopped.status, 503);
      assert.equal(stopped.headers['retry-after'], '1');
      assert.deepEqual(stopped.setCookies, []);
      assert.ok(!stopped.body.includes(id));
    } finally {
      await engine.stop();
      await server.close();
    }
  });

  test(`${name}: HEAD, OPTIONS, HTTP/1.0 and pipelined requests carry the same session and its cookie`, GUARD, async () => {
    const engine = new SessionEngine({});
    const server = await start(engine);
    try {
      const id = sessionIdOf(await request(server.url))!;
      for (const method of ['HEAD', 'OPTIONS']) assert.equal(sessionIdOf(await request(server.url, { method, cookie: `4DSID=${id}` })), id, method);
      const one = `GET / HTTP/1.1\r\nHost: x\r\nCookie: 4DSID=${id}\r\n\r\n`;
      const raw = await new Promise<string>((resolve, reject) => {
        const socket = net.connect(server.port, '127.0.0.1');
        let text = '';
        socket.setEncoding('latin1');
        socket.setTimeout(5_000, () => socket.destroy(new Error(`no full answer: ${text.slice(0, 300)}`)));
        socket.on('data', (chunk: string) => { text += chunk; });
        socket.on('error', reject);
        socket.on('close', () => resolve(text));
        socket.end(one + one + one.replace('\r\n\r\n', '\r\nConnection: close\r\n\r\n'));
      });
      assert.deepEqual(raw.match(/HTTP\/1\.1 \d{3}/g), ['HTTP/1.1 200', 'HTTP/1.1 200', 'HTTP/1.1 200']);
      assert.deepEqual(raw.match(/4DSID=[^;]*/g), [`4DSID=${id}`, `4DSID=${id}`, `4DSID=${id}`]);
      const http10 = await new Promise<string>((resolve, reject) => {
        const socket = net.connect(server.port, '127.0.0.1');
        let text = '';
        socket.setEncoding('latin1');
        socket.on('data', (chunk: string) => { text += chunk; });
        socket.on('error', reject);
        socket.on('close', () => resolve(text));
        socket.end(`GET / HTTP/1.0\r\nCookie: 4DSID=${id}\r\n\r\n`);
      });
      assert.match(http10, /^HTTP\/1\.1 200/);
      assert.deepEqual(http10.match(/4DSID=[^;]*/g), [`4DSID=${id}`]);
    } finally {
      await engine.stop();
      await server.close();
    }
  });
}
