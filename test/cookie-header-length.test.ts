// A Cookie header longer than 16 KiB, which the server accepted (a raised maxHeaderSize, HTTP/2's
// default header list size): the session cookie in it is read like any other.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import Fastify from 'fastify';
import { ManualClock } from '../src/index.js';
import { createServer } from '../src/adapters/node/index.js';
import { sessions as fastifySessions } from '../src/adapters/fastify/index.js';
import { listen } from './contract/app.js';
import { engineWithErrors, request } from './helpers.js';

const GUARD = { timeout: 20_000 };

test('node:http with maxHeaderSize raised: a Cookie header over 16 KiB (a browser with many cookies) keeps its session, it does not get a new one per request', GUARD, async () => {
  const { engine } = engineWithErrors({ clock: new ManualClock() });
  const server = await listen(createServer(engine, (_req, res, proc) => res.end(proc.sessionId), { maxHeaderSize: 64 * 1024 }));
  try {
    const id = (await request(server.url)).body;
    const response = await request(server.url, { cookie: `4DSID=${id}; analytics=${'a'.repeat(17_000)}` });
    assert.equal(response.status, 200);
    assert.equal(response.body, id, 'the same session');
    assert.equal(engine.sessions().length, 1, 'no session created for it');
  } finally {
    await engine.stop();
    await server.close();
  }
});

test('Fastify over HTTP/2 with its default settings: a Cookie header over 16 KiB keeps its session', GUARD, async () => {
  const { engine } = engineWithErrors({ clock: new ManualClock() });
  const app = Fastify({ http2: true });
  await app.register(fastifySessions, { engine });
  app.get('/', async (req) => req.proc.sessionId);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const client = http2.connect(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}`);
  const get = (cookie?: string): Promise<string> => new Promise((resolve, reject) => {
    const stream = client.request({ ':path': '/', ...(cookie === undefined ? {} : { cookie }) });
    let body = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => { body += chunk; });
    stream.on('end', () => resolve(body));
    stream.on('error', reject);
    stream.end();
  });
  try {
    const id = await get();
    assert.equal(await get(`4DSID=${id}; analytics=${'a'.repeat(17_000)}`), id, 'the same session');
    assert.equal(engine.sessions().length, 1, 'no session created for it');
  } finally {
    client.close();
    await engine.stop();
    await app.close();
  }
});
