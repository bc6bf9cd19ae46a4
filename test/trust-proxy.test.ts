// The client address under `trustProxy`, fuzzed against the option's specification: false: the socket's
// address; true: the leftmost X-Forwarded-For entry; n ≥ 1: in [...X-Forwarded-For entries, socket] the
// entry at index length-1-n, clamped to 0; an entry with a port (`1.2.3.4:80`, `[::1]:443`, `[::1]`)
// counts by its address; an IPv6 address counts in the form a socket gives; a malformed entry is treated as missing (the socket's address is used). The address decides IP validation (400) and is what sessions() reports.
// Profile: FUZZ_RUNS / FUZZ_HTTP_RUNS (see test/fuzz-support.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { isIP, type AddressInfo } from 'node:net';
import fc from 'fast-check';
import { SessionEngine } from '../src/index.js';
import { createServer } from '../src/adapters/node/index.js';
import { acquireFor } from '../src/http/binding.js';
import { FUZZ, guardFor, params, trapProcessFailures } from './fuzz-support.js';
import { rawRequest } from './raw-http.js';

/**
 * How a socket writes an IPv6 address (RFC 5952, as libuv's inet_ntop: lowercase, no leading zeros, the
 * longest run of two or more zero groups as '::', the first if tied; the last 32 bits dotted when the
 * first 80 bits are zero and the next 16 are zero or ffff), with an IPv4-mapped one as its IPv4.
 * The 16-bit groups come from the URL parser, a different reading of the address than the product's.
 */
function socketForm(ip: string): string {
  if (isIP(ip) !== 6) return ip;
  const hex = new URL(`http://[${ip.replace(/%.*$/, '')}]/`).hostname.slice(1, -1);
  const [head = '', tail] = hex.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right].map((g) => parseInt(g, 16));
  let best = { base: -1, len: 0 };
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > best.len) best = { base: i, len: j - i };
    i = j === i ? i + 1 : j;
  }
  if (best.len < 2) best = { base: -1, len: 0 };
  const dotted = (): string => [groups[6]! >> 8, groups[6]! & 255, groups[7]! >> 8, groups[7]! & 255].join('.');
  if (best.base === 0 && best.len === 5 && groups[5] === 0xffff) return dotted();
  if (best.base === 0 && best.len === 6) return `::${dotted()}`;
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (i === best.base) { out += '::'; i += best.len - 1; continue; }
    out += `${out === '' || out.endsWith(':') ? '' : ':'}${groups[i]!.toString(16)}`;
  }
  return out;
}

const normalize = (ip: string): string => {
  const written = socketForm(ip);
  return written.toLowerCase().startsWith('::ffff:') && written.includes('.') ? written.slice(7) : written;
};

/** The address an entry names: itself, or without the port a proxy may have written after it. */
function entryAddress(entry: string): string | undefined {
  if (isIP(entry) !== 0) return entry;
  const v6 = entry.match(/^\[(.*)\](:[0-9]+)?$/);
  if (v6 !== null) return isIP(v6[1]!) === 6 && (v6[2] === undefined || v6[2].length <= 6) ? v6[1] : undefined;
  const v4 = entry.match(/^(.*):([0-9]+)$/);
  return v4 !== null && isIP(v4[1]!) === 4 && v4[2]!.length <= 5 ? v4[1] : undefined;
}

/** The specification, written out (entries never empty here: see the note on `entryArb`). */
function specClientIp(socket: string, forwardedFor: string | undefined, trustProxy: boolean | number): string {
  if (trustProxy === false || forwardedFor === undefined) return normalize(socket);
  const entries = forwardedFor.split(',').map((e) => e.trim());
  const chosen = trustProxy === true ? entries[0] : [...entries, socket][Math.max(0, entries.length - trustProxy)];
  const address = chosen === undefined ? undefined : entryAddress(chosen);
  return normalize(address ?? socket);
}

// Entries are never empty: whether "a, , b" counts the empty one as a hop is not specified, so the
// property does not guess. Malformed ones are every other shape a client can write.
const entryArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.ipV4() },
  { weight: 2, arbitrary: fc.ipV6() },
  { weight: 1, arbitrary: fc.ipV4().map((ip) => `::ffff:${ip}`) },
  { weight: 2, arbitrary: fc.constantFrom('unknown', '_hidden', '1.2.3.4:80', '[::1]:443', '[::1]', '[1.2.3.4]:80', '1.2.3.4:123456', '::FFFF:1.2.3.4', '999.1.1.1', '1.2.3', 'localhost', '<script>', 'x'.repeat(2_000)) },
  { weight: 1, arbitrary: fc.tuple(fc.oneof(fc.ipV4(), fc.ipV6().map((ip) => `[${ip}]`)), fc.integer({ min: 0, max: 65_535 })).map(([ip, port]) => `${ip}:${port}`) },
  { weight: 1, arbitrary: fc.string({ minLength: 1, maxLength: 20 }).filter((s) => !s.includes(',') && s.trim() !== '' && !/[\x00-\x08\x0a-\x1f\x7f]/.test(s)) },
);
const xffArb = fc.option(fc.tuple(fc.array(entryArb, { minLength: 1, maxLength: 6 }), fc.constantFrom(',', ', ', ' , ')).map(([e, sep]) => e.join(sep)), { freq: 6 });
const trustArb = fc.constantFrom<boolean | number>(false, true, 1, 2, 3, 100);
const socketArb = fc.constantFrom('127.0.0.1', '::ffff:127.0.0.1', '10.1.2.3', '::1');

test(`the client address follows trustProxy's specification, malformed X-Forwarded-For entries included (${FUZZ.direct} cases)`, guardFor(FUZZ.direct, 2), async () => {
  const engine = new SessionEngine({ maxSessions: 10 });
  let created = '';
  engine.on('create', (event) => { created = event.ip; });
  try {
    await fc.assert(fc.asyncProperty(socketArb, xffArb, trustArb, async (socket, xff, trust) => {
      engine.setOption('trustProxy', trust);
      const lease = await acquireFor(engine, { cookieHeader: undefined, remoteAddress: socket, forwardedFor: xff ?? undefined, secure: false });
      lease.release();
      assert.equal(created, specClientIp(socket, xff ?? undefined, trust), `socket ${socket}, X-Forwarded-For ${JSON.stringify(xff)}, trustProxy ${String(trust)}`);
    }), params(FUZZ.direct));
  } finally {
    await engine.stop();
  }
});

test('a malformed X-Forwarded-For entry is treated as missing: the socket address is used; one with a port counts by its address (examples from the specification)', async () => {
  const engine = new SessionEngine({ maxSessions: 20 });
  let created = '';
  engine.on('create', (event) => { created = event.ip; });
  const cases: [xff: string, trust: boolean | number, expected: string][] = [
    ['198.51.100.7', true, '198.51.100.7'],
    ['unknown', true, '10.0.0.1'],
    ['<script>alert(1)</script>, 198.51.100.7', true, '10.0.0.1'],
    ['198.51.100.7:4711', 1, '198.51.100.7'],
    ['[2001:db8::7]:4711', 1, '2001:db8::7'],
    ['198.51.100.7:', 1, '10.0.0.1'],
    ['198.51.100.7:4711:1', 1, '10.0.0.1'],
    ['198.51.100.7, garbage', 1, '10.0.0.1'],
    ['garbage, 198.51.100.7', 1, '198.51.100.7'],
    ['garbage, 198.51.100.7', 2, '10.0.0.1'],
    ['x'.repeat(4_000), true, '10.0.0.1'],
  ];
  try {
    for (const [xff, trust, expected] of cases) {
      engine.setOption('trustProxy', trust);
      (await acquireFor(engine, { cookieHeader: undefined, remoteAddress: '::ffff:10.0.0.1', forwardedFor: xff, secure: false })).release();
      assert.equal(created, expected, `X-Forwarded-For ${JSON.stringify(xff.slice(0, 60))}, trustProxy ${String(trust)}`);
    }
  } finally {
    await engine.stop();
  }
});

test('with trustProxy false (the default), X-Forwarded-For cannot borrow another address\'s session or name a new session\'s address', async () => {
  const engine = new SessionEngine();
  const ips: string[] = [];
  engine.on('create', (event) => ips.push(event.ip));
  const server = createServer(engine, (_req, res, proc) => res.end(proc.sessionId));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const get = (from: string, headers: string): ReturnType<typeof rawRequest> =>
    rawRequest(port, from, Buffer.from(`GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n${headers}\r\n`));
  try {
    assert.equal(engine.getOption('trustProxy'), false);
    const first = await get('127.0.0.1', '');
    assert.equal(first.status, 200);
    const id = first.body;
    const borrowed = await get('127.0.0.2', `Cookie: 4DSID=${id}\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-For: 127.0.0.1\r\n`);
    assert.equal(borrowed.status, 400, 'the socket address decides, whatever the header claims');
    const fresh = await get('127.0.0.2', 'X-Forwarded-For: 203.0.113.9\r\n');
    assert.equal(fresh.status, 200);
    assert.deepEqual(ips, ['127.0.0.1', '127.0.0.2']);
    assert.equal(engine.sessions().find((s) => s.id === fresh.body)?.ip, '127.0.0.2');
  } finally {
    await engine.stop();
    server.close();
  }
});

test('trustProxy: 1 behind one proxy: the address the proxy appended decides IP validation, and the client cannot forge it by prepending entries', async () => {
  const engine = new SessionEngine({ trustProxy: 1 });
  const server = createServer(engine, (_req, res, proc) => res.end(proc.sessionId));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const viaProxy = (clientSays: string, proxySaw: string, cookie = ''): ReturnType<typeof rawRequest> =>
    rawRequest(port, '127.0.0.1', Buffer.from(`GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n${cookie}X-Forwarded-For: ${clientSays}${clientSays === '' ? '' : ', '}${proxySaw}\r\n\r\n`));
  try {
    const alice = await viaProxy('', '198.51.100.1');
    assert.equal(engine.sessions()[0]?.ip, '198.51.100.1');
    const mallory = await viaProxy('198.51.100.1', '203.0.113.66', `Cookie: 4DSID=${alice.body}\r\n`);
    assert.equal(mallory.status, 400, 'a prepended entry is not the hop the proxy wrote');
    const back = await viaProxy('', '198.51.100.1', `Cookie: 4DSID=${alice.body}\r\n`);
    assert.equal(back.status, 200);
    assert.equal(back.body, alice.body);
  } finally {
    await engine.stop();
    server.close();
  }
});

test(`over real sockets, the session's address and IP validation follow trustProxy for any X-Forwarded-For (${Math.ceil(FUZZ.http / 3)} cases)`, guardFor(FUZZ.http, 20), async () => {
  const engine = new SessionEngine({ maxSessions: 50 });
  const created: string[] = [];
  engine.on('create', (event) => created.push(event.ip));
  const server = createServer(engine, (_req, res, proc) => res.end(proc.sessionId));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const known: { id: string; ip: string }[] = [];
  const lineArb = fc.array(fc.array(entryArb, { minLength: 1, maxLength: 3 }).map((e) => e.join(', ')), { minLength: 0, maxLength: 2 });
  try {
    const { failures } = await trapProcessFailures(() => fc.assert(fc.asyncProperty(
      fc.constantFrom('127.0.0.1', '127.0.0.2'), lineArb, trustArb, fc.option(fc.nat(), { freq: 2 }),
      async (socket, lines, trust, reuse) => {
        engine.setOption('trustProxy', trust);
        const session = reuse === null || known.length === 0 ? undefined : known[reuse % known.length];
        const bytes = Buffer.from([
          'GET / HTTP/1.1', 'Host: t', 'Connection: close',
          ...(session === undefined ? [] : [`Cookie: 4DSID=${session.id}`]),
          ...lines.map((line) => `X-Forwarded-For: ${line}`), '', '',
        ].join('\r\n'), 'utf8');
        const before = created.length;
        const live = session !== undefined && engine.sessions().some((s) => s.id === session.id);
        const response = await rawRequest(port, socket, bytes);
        // Node joins repeated X-Forwarded-For headers with ", ".
        const client = specClientIp(socket, lines.length === 0 ? undefined : lines.join(', '), trust);
        if (live && session.ip !== client) {
          assert.equal(response.status, 400, `another client's session: ${JSON.stringify({ socket, lines, trust })}`);
          return;
        }
        assert.equal(response.status, 200);
        if (live) {
          assert.equal(response.body, session.id);
          return;
        }
        assert.equal(created.length, before + 1);
        assert.equal(created.at(-1), client, `the new session's address: ${JSON.stringify({ socket, lines, trust })}`);
        known.push({ id: response.body, ip: client });
        if (known.length > 40) known.shift();
      },
    ), params(Math.ceil(FUZZ.http / 3))));
    assert.deepEqual(failures, []);
  } finally {
    await engine.stop();
    server.close();
  }
});
