// Fastify over HTTP/2 (h2c): a handler that lets an ERR_SESSION_STOPPED escape (here from an
// engine.acquire() made while the engine stops) is answered 503 by the plugin's error handler. Its
// answer must not carry Connection: close, which HTTP/2 forbids (RFC 9113 §8.2.2): Node's compatibility
// layer drops it with an UnsupportedWarning on the process, as the refusal in onRequest already avoids
// (test/stop-503-http2.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import Fastify from 'fastify';
import { ManualClock, SessionEngine, type SessionError } from '../src/index.js';
import { sessions } from '../src/adapters/fastify/index.js';
import { deferred } from './helpers.js';
import { until } from './contract/harness.js';

function h2get(client: http2.ClientHttp2Session, path: string): Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const stream = client.request({ ':path': path });
    let headers: http2.IncomingHttpHeaders = {};
    let body = '';
    stream.on('response', (h) => { headers = h; });
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => { body += chunk; });
    stream.on('end', () => resolve({ status: Number(headers[':status']), headers, body }));
    stream.on('error', reject);
    stream.end();
  });
}

test('Fastify over HTTP/2, a handler\'s ERR_SESSION_STOPPED: 503 with Retry-After, no connection header, no process warning', { timeout: 10_000 }, async () => {
  const engine = new SessionEngine({ clock: new ManualClock() });
  const errors: SessionError[] = [];
  engine.on('error', (error) => errors.push(error));
  const gate = deferred<void>();
  const app = Fastify({ http2: true });
  await app.register(sessions, { engine });
  app.get('/other', async () => {
    await gate.promise;
    // The engine stops meanwhile: another session's lease is refused.
    const lease = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
    lease.release();
    return 'unreachable';
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const client = http2.connect(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}`);
  client.on('error', () => {});
  const warnings: string[] = [];
  const onWarning = (warning: Error): void => { warnings.push(`${warning.name}: ${warning.message}`); };
  process.on('warning', onWarning);
  try {
    const answer = h2get(client, '/other');
    await until(() => engine.stats().busySessions === 1, 'the handler runs');
    const stopping = engine.stop();
    gate.resolve();
    const refused = await answer;
    await stopping;
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(refused.status, 503, JSON.stringify(refused));
    assert.equal(refused.headers['retry-after'], '1');
    assert.equal(refused.headers.connection, undefined);
    assert.deepEqual(warnings, []);
  } finally {
    process.off('warning', onWarning);
    gate.resolve();
    client.destroy();
    await app.close();
  }
});
