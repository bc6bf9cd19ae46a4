// Fuzzing over real sockets: raw HTTP/1.1 requests (any byte, which node:http's own client refuses to
// send) with Cookie headers of every shape (duplicates, many cookies, huge, non-ASCII, control bytes,
// 4DSID values live, dead, altered or invented), X-Forwarded-For headers, and bodies under and over the
// limit with well-formed and malformed lengths (readBody reads Content-Length), from two loopback addresses. Every answer is predicted: the status (only 200/400/413/431/503
// exist), the session it ran in, the Set-Cookie line, and that no id a client chose is ever adopted.
// Profile: FUZZ_HTTP_RUNS cases (see test/fuzz-support.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { ManualClock, SessionEngine, SessionError } from '../src/index.js';
import { createServer, readBody } from '../src/adapters/node/index.js';
import {
  FUZZ, UUID_V4, assertWellFormedSetCookie, cookieHeaderArb, guardFor, joinParts,
  modelSessionId, params, renderParts, trapProcessFailures, xffHeaderArb, stopWithin, type CookieHeaderShape,
} from './fuzz-support.js';
import { NODE_MAX_HEADER_BYTES, hasControlByte, headerValues, oneLine, rawRequest, type RawResponse } from './raw-http.js';

const MINUTE = 60_000;
const BODY_LIMIT = 64;
const MAX_SESSIONS = 24;
const SOCKET_IPS = ['127.0.0.1', '127.0.0.2'] as const;
const DESIGNED = new Set([200, 400, 413, 431, 503]);

interface Case {
  readonly ip: 0 | 1;
  readonly route: 'GET /' | 'POST /body' | 'GET /logout';
  readonly cookies: readonly CookieHeaderShape[];
  /** Extra unrelated cookies put before the first header's parts ("many cookies"). */
  readonly extra: number;
  readonly xff: readonly string[];
  readonly body: { readonly size: number; readonly chunked: boolean };
  /** How the body's length is written: well-formed variants node:http accepts, and ones it refuses (400). */
  readonly length: 'plain' | 'zeros' | 'spaces' | 'plus' | 'duplicate' | 'list' | 'withChunked' | 'negative' | 'hex';
  /** A control byte slipped into one Cookie header (node:http must refuse the request). */
  readonly control: { readonly byte: number; readonly at: number } | null;
}

const caseArb: fc.Arbitrary<Case> = fc.record({
  ip: fc.constantFrom(0 as const, 0 as const, 1 as const),
  route: fc.constantFrom('GET /' as const, 'GET /' as const, 'POST /body' as const, 'GET /logout' as const),
  cookies: fc.array(cookieHeaderArb, { minLength: 0, maxLength: 3 }),
  extra: fc.constantFrom(0, 0, 0, 40, 300),
  xff: fc.array(xffHeaderArb, { minLength: 0, maxLength: 2 }),
  body: fc.record({ size: fc.oneof(fc.integer({ min: 0, max: BODY_LIMIT }), fc.integer({ min: BODY_LIMIT + 1, max: 4 * BODY_LIMIT })), chunked: fc.boolean() }),
  control: fc.option(fc.record({ byte: fc.constantFrom(0x00, 0x01, 0x08, 0x0a, 0x0b, 0x0d, 0x1b, 0x1f, 0x7f), at: fc.nat() }), { freq: 12 }),
  length: fc.oneof({ weight: 12, arbitrary: fc.constant('plain' as const) }, fc.constantFrom('zeros' as const, 'spaces' as const, 'plus' as const, 'duplicate' as const, 'list' as const, 'withChunked' as const, 'negative' as const, 'hex' as const)),
});
// Refused for a Content-Length body ('withChunked' only applies to a chunked one, refused there: both headers at once).
const REFUSED_LENGTHS = new Set<Case['length']>(['plus', 'duplicate', 'list', 'negative', 'hex']);

function lengthHeaders(c: Case, size: number): string {
  if (c.body.chunked) return c.length === 'withChunked' ? `Transfer-Encoding: chunked\r\nContent-Length: ${size}\r\n` : 'Transfer-Encoding: chunked\r\n';
  switch (c.length) {
    case 'zeros': return `Content-Length: 00${size}\r\n`;
    case 'spaces': return `Content-Length:   ${size}  \r\n`;
    case 'plus': return `Content-Length: +${size}\r\n`;
    case 'duplicate': return `Content-Length: ${size}\r\nContent-Length: ${size}\r\n`;
    case 'list': return `Content-Length: ${size}, ${size}\r\n`;
    case 'negative': return `Content-Length: -${size + 1}\r\n`;
    case 'hex': return `Content-Length: 0x${size.toString(16)}\r\n`;
    default: return `Content-Length: ${size}\r\n`;
  }
}

const latin1 = (text: string): string => Buffer.from(text, 'utf8').toString('latin1');

test(`raw HTTP requests with fuzzed Cookie, X-Forwarded-For and bodies get only designed answers, in the predicted session (${FUZZ.http} cases)`, guardFor(FUZZ.http, 20), async () => {
  const clock = new ManualClock();
  const engine = new SessionEngine<{ n: number }>({ clock, maxSessions: MAX_SESSIONS, init: () => ({ n: 0 }), inactiveSessionTimeoutMs: 30 * MINUTE });
  const errors: SessionError[] = [];
  engine.on('error', (error) => errors.push(error));
  const issued: string[] = [];
  const everIssued = new Set<string>();
  let reissued = false;
  const creatorIp = new Map<string, string>();
  engine.on('create', (event) => {
    reissued ||= everIssued.has(event.sessionId);
    everIssued.add(event.sessionId);
    issued.push(event.sessionId);
    creatorIp.set(event.sessionId, event.ip);
  });
  const counts = new Map<string, number>();

  const server = createServer(engine, async (req, res, proc) => {
    const n = ++proc.vars.n;
    if (req.url === '/logout') {
      await engine.closeSession(proc.sessionId);
      res.end('bye');
      return;
    }
    if (req.url === '/body') {
      try {
        const body = await readBody(req, { maxBytes: BODY_LIMIT });
        res.end(`${proc.sessionId} ${n} ${body.length}`);
      } catch (error) {
        if (!(error instanceof SessionError)) throw error;
        res.writeHead(error.httpStatus, { 'content-type': 'text/plain' }).end(error.code);
      }
      return;
    }
    res.end(`${proc.sessionId} ${n}`);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const statuses = new Map<number, number>();

  try {
    const { failures } = await trapProcessFailures(async () => {
      await fc.assert(fc.asyncProperty(caseArb, async (c) => {
        const socketIp = SOCKET_IPS[c.ip];
        const pool = issued.slice(-MAX_SESSIONS * 2);
        // Each Cookie header line, as the client writes it, and what node:http will hand the binding.
        const lines: string[] = [];
        const modelTexts: string[] = [];
        const modelTargets: (string | undefined)[] = [];
        c.cookies.forEach((shape, k) => {
          const { texts, targets } = renderParts(shape, '4DSID', pool);
          const extra = k === 0 ? Array.from({ length: c.extra }, (_, j) => `c${j}=${'v'.repeat(j % 7)}`) : [];
          const allTexts = [...extra, ...texts];
          lines.push(joinParts(allTexts, [...extra.map(() => '; '), ...shape.seps]));
          modelTexts.push(...allTexts.map(latin1));
          modelTargets.push(...extra.map(() => undefined), ...targets.map((t) => (t === undefined ? undefined : latin1(t))));
        });
        const cookieBytes: Buffer[] = lines.map((line) => Buffer.from(line, 'utf8'));
        if (c.control !== null && cookieBytes.length > 0) {
          const target = cookieBytes[c.control.at % cookieBytes.length]!;
          const at = c.control.at % (target.length + 1);
          cookieBytes[c.control.at % cookieBytes.length] = Buffer.concat([target.subarray(0, at), Buffer.from([c.control.byte]), target.subarray(at)]);
        }
        for (let k = 0; k < cookieBytes.length; k++) cookieBytes[k] = oneLine(cookieBytes[k]!);
        const xffBytes = c.xff.map((value) => oneLine(Buffer.from(value, 'utf8')));
        const [method, path] = c.route.split(' ') as [string, string];
        const bodyBytes = method === 'POST' ? Buffer.alloc(c.body.size, 'b') : Buffer.alloc(0);
        const head = Buffer.concat([
          Buffer.from(`${method} ${path} HTTP/1.1\r\nHost: fuzz.test\r\nConnection: close\r\n`),
          ...cookieBytes.flatMap((bytes) => [Buffer.from('Cookie: '), bytes, Buffer.from('\r\n')]),
          ...xffBytes.flatMap((bytes) => [Buffer.from('X-Forwarded-For: '), bytes, Buffer.from('\r\n')]),
          Buffer.from(method === 'POST' ? lengthHeaders(c, bodyBytes.length) : ''),
          Buffer.from('\r\n'),
        ]);
        const body = method !== 'POST' || !c.body.chunked ? bodyBytes
          : Buffer.concat([...(bodyBytes.length > 0 ? [Buffer.from(`${bodyBytes.length.toString(16)}\r\n`), bodyBytes, Buffer.from('\r\n')] : []), Buffer.from('0\r\n\r\n')]);
        const valuesWithControl = [...cookieBytes, ...xffBytes].some(hasControlByte);
        const refusedLength = method === 'POST' && (c.body.chunked ? c.length === 'withChunked' : REFUSED_LENGTHS.has(c.length));

        // What the session engine knows before the request.
        const live = new Map(engine.sessions().filter((s) => s.expiresAt.getTime() > clock.now()).map((s) => [s.id, s]));
        const issuedBefore = issued.length;
        const response = await rawRequest(port, socketIp, Buffer.concat([head, body]));
        statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
        const label = `case ${JSON.stringify({ ...c, cookies: lines.map((l) => (l.length > 200 ? `${l.slice(0, 200)}…(${l.length})` : l)) })} → ${response.status} ${JSON.stringify(response.body.slice(0, 120))}`;
        assert.ok(DESIGNED.has(response.status), `only designed statuses: ${label}`);

        // node:http's own refusals come first (the size limit wins when it is reached before the bad byte).
        const overLimit = head.length > NODE_MAX_HEADER_BYTES + 512;
        const nearLimit = !overLimit && head.length > NODE_MAX_HEADER_BYTES - 512;
        if (valuesWithControl || overLimit || refusedLength) {
          const allowed = [...(valuesWithControl || refusedLength ? [400] : []), ...(overLimit || nearLimit ? [431] : [])];
          assert.ok(allowed.includes(response.status), `node:http refuses a control byte in a header value or a malformed body length (400), or too many header bytes (431): ${label}`);
          assert.deepEqual(headerValues(response, 'set-cookie'), [], label);
          assert.equal(issued.length, issuedBefore, `nothing created: ${label}`);
          return;
        }
        if (nearLimit && response.status === 431) return; // at the limit: Node's own answer

        const named = modelSessionId(modelTexts.join('; '), modelTargets);
        const session = named === undefined ? undefined : live.get(named);
        if (session !== undefined && session.ip !== socketIp) {
          assert.equal(response.status, 400, `another address's live session is refused: ${label}`);
          assert.match(response.body, /^Bad Request/, label);
          assert.deepEqual(headerValues(response, 'set-cookie'), [], `a refused request sets no cookie: ${label}`);
          assert.equal(issued.length, issuedBefore, label);
          return;
        }

        const expectedStatus = method === 'POST' && c.body.size > BODY_LIMIT ? 413 : 200;
        assert.equal(response.status, expectedStatus, label);
        let id: string;
        if (session !== undefined) {
          id = session.id;
          assert.equal(issued.length, issuedBefore, `the live session is reused, nothing created: ${label}`);
        } else {
          assert.equal(issued.length, issuedBefore + 1, `exactly one new session: ${label}`);
          id = issued.at(-1)!;
          assert.match(id, UUID_V4);
          assert.equal(reissued, false, 'never an id issued before');
          assert.notEqual(id, named, 'never the id the client sent');
          assert.equal(creatorIp.get(id), socketIp, `the session's address is the socket's; X-Forwarded-For is not trusted by default: ${label}`);
        }
        const n = (session === undefined ? 0 : counts.get(id) ?? 0) + 1;
        counts.set(id, n);
        const cookies = headerValues(response, 'set-cookie');
        assert.equal(cookies.length, 1, `exactly one Set-Cookie: ${label}`);
        const loggedOut = c.route === 'GET /logout';
        assertWellFormedSetCookie(cookies[0]!, {
          name: '4DSID', value: loggedOut ? '' : id, clear: loggedOut, domain: undefined, path: '/',
          expires: loggedOut ? new Date(0).toUTCString() : new Date(clock.now() + 30 * MINUTE).toUTCString(), secure: false, sameSite: 'Strict',
        });
        if (loggedOut) assert.equal(response.body, 'bye');
        else if (expectedStatus === 413) assert.equal(response.body, 'ERR_SESSION_BODY_TOO_LARGE');
        else assert.equal(response.body, method === 'POST' ? `${id} ${n} ${c.body.size}` : `${id} ${n}`, label);
      }), params(FUZZ.http));
    });
    assert.deepEqual(failures, [], 'no unhandled rejection, no uncaught exception');
    assert.deepEqual(errors.map((e) => e.code), [], 'no handler, hook or drain error');
    const stats = engine.stats();
    assert.equal(stats.busySessions, 0, 'every process released');
    assert.equal(stats.queuedRequests, 0);
    assert.ok(stats.sessions <= MAX_SESSIONS);
    assert.ok((statuses.get(200) ?? 0) > 0 && (statuses.get(400) ?? 0) > 0 && (statuses.get(413) ?? 0) > 0, `the cases reach every branch: ${JSON.stringify([...statuses])}`);
  } finally {
    await stopWithin(engine, clock);
    server.closeAllConnections();
    server.close();
  }
});

// ---- regressions from the fuzzing ---------------------------------------------------------------------

test('a cookie option setOption accepts never breaks responses: answered with the cookie, process released, no unhandled rejection', async () => {
  const engine = new SessionEngine({ clock: new ManualClock() });
  const errors: SessionError[] = [];
  engine.on('error', (error) => errors.push(error));
  const server = createServer(engine, (_req, res) => res.end('ok'));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  try {
    const { failures } = await trapProcessFailures(async () => {
      // A 64-character DNS label: the fuzzer found setOption accepting it and the cookie serializer refusing it.
      for (const [name, value] of [['cookieDomain', `${'a'.repeat(64)}.example.com`], ['cookiePath', '/<']] as const) {
        try {
          engine.setOption(name, value);
        } catch (error) {
          assert.equal((error as TypeError & { code?: string }).code, 'ERR_SESSION_INVALID_OPTION');
          continue;
        }
        const response = await rawRequest(port, '127.0.0.1', Buffer.from('GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'));
        assert.equal(response.status, 200, `${name} = ${value}: answered`);
        assert.equal(headerValues(response, 'set-cookie').length, 1);
        engine.setOption(name, name === 'cookiePath' ? '/' : undefined);
      }
    });
    assert.deepEqual(failures, [], 'no unhandled rejection');
    assert.deepEqual(errors.map((e) => e.code), []);
    assert.equal(engine.stats().busySessions, 0, 'every process released');
  } finally {
    await stopWithin(engine);
    server.closeAllConnections();
    server.close();
  }
});

test("a handler that lets readBody's ERR_SESSION_BODY_TOO_LARGE propagate answers 413, the status the README gives that code, not a 500", async () => {
  const engine = new SessionEngine({ clock: new ManualClock() });
  const errors: SessionError[] = [];
  engine.on('error', (error) => errors.push(error));
  const server = createServer(engine, async (req, res) => {
    const body = await readBody(req, { maxBytes: BODY_LIMIT }); // no try/catch, as in readBody's own @example
    res.end(String(body.length));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  try {
    const post = (size: number): Promise<RawResponse> => rawRequest(port, '127.0.0.1', Buffer.concat([
      Buffer.from(`POST / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: ${size}\r\n\r\n`), Buffer.alloc(size, 'x'),
    ]));
    assert.equal((await post(BODY_LIMIT)).status, 200);
    const tooLarge = await post(BODY_LIMIT + 1);
    assert.equal(tooLarge.status, 413, `got ${tooLarge.status} ${JSON.stringify(tooLarge.body)}`);
    assert.deepEqual(errors.map((e) => e.code), [], 'a client sending too much is not a handler failure');
  } finally {
    await stopWithin(engine);
    server.closeAllConnections();
    server.close();
  }
});
