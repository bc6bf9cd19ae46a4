// A 503 ERR_SESSION_STOPPED says Connection: close over HTTP/1.1; over HTTP/2 that header is forbidden
// (RFC 9113 §8.2.2), and Node's compat layer drops it with an UnsupportedWarning: an HTTP/2 answer
// should not carry it (in every adapter: the refusal paths go through headersFor).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { createAdaptorServer } from '@hono/node-server';
import { Hono } from 'hono';
import { sessions, type SessionsEnv } from '../src/adapters/hono/index.js';
import { SessionEngine } from '../src/index.js';
import type { Vars } from './release-support.js';

function h2get(port: number): Promise<{ status: number; headers: http2.IncomingHttpHeaders; error?: string }> {
  return new Promise((resolve) => {
    const client = http2.connect(`http://127.0.0.1:${port}`);
    client.on('error', () => {});
    const stream = client.request({ ':path': '/' });
    let headers: http2.IncomingHttpHeaders = {};
    stream.on('response', (h) => { headers = h; });
    stream.resume();
    stream.on('end', () => { client.close(); resolve({ status: Number(headers[':status']), headers }); });
    stream.on('error', (error: NodeJS.ErrnoException) => { client.close(); resolve({ status: 0, headers, error: error.code ?? error.message }); });
    stream.end();
  });
}

async function warningsDuring(body: () => Promise<void>): Promise<string[]> {
  const warnings: string[] = [];
  const onWarning = (w: Error): void => { warnings.push(`${w.name}: ${w.message}`); };
  process.on('warning', onWarning);
  try { await body(); } finally { process.off('warning', onWarning); }
  return warnings;
}

test('Hono over HTTP/2, a request after stop(): 503 without a connection header and no process warning', { timeout: 10_000 }, async () => {
  const engine = new SessionEngine<Vars>({});
  const app = new Hono<SessionsEnv<Vars>>();
  app.use(sessions(engine));
  app.get('/', (c) => c.text('ok'));
  const server = createAdaptorServer({ fetch: app.fetch, createServer: http2.createServer }) as http2.Http2Server;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    await engine.stop();
    let answer: Awaited<ReturnType<typeof h2get>> | undefined;
    const warnings = await warningsDuring(async () => {
      answer = await h2get((server.address() as AddressInfo).port);
      await new Promise((r) => setTimeout(r, 20));
    });
    assert.equal(answer?.status, 503, JSON.stringify(answer));
    assert.equal(answer?.headers.connection, undefined);
    assert.deepEqual(warnings, []);
  } finally {
    server.close();
  }
});
