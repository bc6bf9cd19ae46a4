import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { once } from 'node:events';
import { Socket } from 'node:net';
import { SessionEngine, SessionError } from '../src/index.js';
import { readBody, readForm, type ReadBodyOptions } from '../src/adapters/node/index.js';
import { deferred, request, startServer, type TestServer } from './helpers.js';

const LIMIT = 1024;

/** A server that answers the body's length, or the SessionError's status and code. */
async function bodyServer(options: ReadBodyOptions = { maxBytes: LIMIT }): Promise<{ server: TestServer; engine: SessionEngine; seen: string[] }> {
  const engine = new SessionEngine();
  const seen: string[] = [];
  const server = await startServer(engine, async (req, res) => {
    try {
      if (req.url === '/form') {
        const form = await readForm(req, options);
        res.end(JSON.stringify(Object.fromEntries(form)));
        return;
      }
      const body = await readBody(req, options);
      seen.push(body.toString('utf8'));
      res.end(`read ${body.length}`);
    } catch (error) {
      if (!(error instanceof SessionError)) throw error;
      res.writeHead(error.httpStatus, { 'content-type': 'text/plain' }).end(error.code);
    }
  });
  return { server, engine, seen };
}

async function stopAll(server: TestServer, engine: SessionEngine): Promise<void> {
  await engine.stop();
  await server.close();
}

test('readBody returns a body of exactly maxBytes whole', async () => {
  const { server, engine, seen } = await bodyServer();
  try {
    const response = await request(server.url, { method: 'POST', body: 'x'.repeat(LIMIT) });
    assert.equal(response.status, 200);
    assert.equal(response.body, `read ${LIMIT}`);
    assert.equal(seen[0]?.length, LIMIT);
  } finally {
    await stopAll(server, engine);
  }
});

test('a content-length over maxBytes is refused with 413 before any byte is buffered, and the keep-alive connection stays usable', async () => {
  const { server, engine, seen } = await bodyServer();
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const send = (body: string): Promise<{ status: number; text: string; reused: boolean }> => new Promise((resolve, reject) => {
      const req = http.request(`${server.url}/`, { method: 'POST', agent }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => { text += chunk; });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text, reused: req.reusedSocket }));
      });
      req.on('error', reject);
      req.end(body);
    });
    const refused = await send('y'.repeat(LIMIT * 20));
    assert.equal(refused.status, 413);
    assert.equal(refused.text, 'ERR_SESSION_BODY_TOO_LARGE');
    const next = await send('ok');
    assert.equal(next.status, 200);
    assert.equal(next.text, 'read 2');
    assert.equal(next.reused, true, 'the second request ran on the same connection');
    assert.deepEqual(seen, ['ok']);
  } finally {
    agent.destroy();
    await stopAll(server, engine);
  }
});

test('a chunked body without content-length is counted and refused with 413 once it passes maxBytes', async () => {
  const { server, engine, seen } = await bodyServer();
  try {
    const req = http.request(`${server.url}/`, { method: 'POST', agent: false, headers: { 'transfer-encoding': 'chunked' } });
    const responded = once(req, 'response') as Promise<[http.IncomingMessage]>;
    for (let i = 0; i < 8; i++) req.write('z'.repeat(512));
    req.end();
    const [res] = await responded;
    let text = '';
    for await (const chunk of res) text += String(chunk);
    assert.equal(res.statusCode, 413);
    assert.equal(text, 'ERR_SESSION_BODY_TOO_LARGE');
    assert.deepEqual(seen, []);
  } finally {
    await stopAll(server, engine);
  }
});

test('readForm decodes a UTF-8 urlencoded form', async () => {
  const { server, engine } = await bodyServer();
  try {
    const response = await request(server.url, { method: 'POST', path: '/form', body: new URLSearchParams({ name: 'Zoë & Chloé', n: '3' }).toString() });
    assert.deepEqual(JSON.parse(response.body), { name: 'Zoë & Chloé', n: '3' });
  } finally {
    await stopAll(server, engine);
  }
});

test('readBody rejects a negative or fractional maxBytes with a TypeError', async () => {
  const fake = new http.IncomingMessage(new Socket());
  await assert.rejects(readBody(fake, { maxBytes: -1 }), TypeError);
  await assert.rejects(readBody(fake, { maxBytes: 1.5 }), TypeError);
});

test('a client that disconnects in the middle of its body makes readBody reject instead of waiting forever', async () => {
  const engine = new SessionEngine();
  const outcome = deferred<unknown>();
  const reading = deferred();
  const server = await startServer(engine, async (req, res) => {
    try {
      const body = readBody(req); // listening from here on
      reading.resolve();
      outcome.resolve(await body);
    } catch (error) {
      outcome.resolve(error);
    }
    res.end();
  });
  try {
    const req = http.request(`${server.url}/`, { method: 'POST', agent: false, headers: { 'content-length': '100' } });
    req.on('error', () => {});
    req.write('only part of it');
    await reading.promise;
    req.destroy();
    const error = await outcome.promise;
    assert.ok(error instanceof SessionError, String(error));
    assert.equal(error.code, 'ERR_SESSION_BODY_ABORTED');
    assert.equal(error.httpStatus, 400);
  } finally {
    await stopAll(server, engine);
  }
});
