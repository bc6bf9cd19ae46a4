// Hono on @hono/node-server over HTTP/2 (h2c): an upload whose client leaves mid-body, its
// reader then failing with a plain error of its own (busboy's "Unexpected end of form": the reset ends
// the request stream), is no failure of the application, as over HTTP/1.1 (release-client-left.test.ts).
// An Http2ServerRequest says `complete` once its stream is closed, whatever arrived. The same error with
// its client there is still reported.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { createAdaptorServer } from '@hono/node-server';
import { Hono } from 'hono';
import { sessions, type SessionsEnv } from '../src/adapters/hono/index.js';
import { deferred } from './helpers.js';
import { until } from './contract/harness.js';
import { withEngine, type Vars } from './release-support.js';

const END_OF_FORM = '--b--';

/** A multipart reader's way: the stream ending before the closing boundary is its own plain Error. */
function readForm(req: http2.Http2ServerRequest, receiving: () => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => { body += chunk; receiving(); });
    req.once('end', () => (body.endsWith(END_OF_FORM) ? resolve() : reject(new Error('Unexpected end of form'))));
    req.once('close', () => reject(new Error('Unexpected end of form')));
  });
}

test('Hono over HTTP/2, an upload whose client leaves mid-body, its reader failing with a plain Error: not reported as the handler\'s failure; the same error with the client there is', { timeout: 10_000 }, async () => {
  await withEngine(async (_engine, _clock, errors) => {
    const engine = _engine;
    const receiving = deferred<void>();
    let handlerFailed = 0;
    const app = new Hono<SessionsEnv<Vars> & { Bindings: { incoming: http2.Http2ServerRequest } }>();
    app.use(sessions(engine));
    app.get('/', (c) => c.text('ok'));
    app.post('/upload', async (c) => {
      try {
        await readForm(c.env.incoming, () => receiving.resolve());
      } catch (error) {
        handlerFailed++;
        throw error;
      }
      return c.text('read');
    });
    const server = createAdaptorServer({ fetch: app.fetch, createServer: http2.createServer }) as http2.Http2Server;
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const client = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    client.on('error', () => {});
    try {
      const answer = (path: string, method: string, cookie: string | undefined, body?: string): Promise<{ status: number; setCookie: string }> => new Promise((resolve, reject) => {
        const stream = client.request({ ':path': path, ':method': method, ...(cookie === undefined ? {} : { cookie }) });
        let status = 0;
        let setCookie = '';
        stream.on('response', (headers) => { status = Number(headers[':status']); setCookie = String(headers['set-cookie'] ?? ''); });
        stream.on('error', reject);
        stream.resume();
        stream.on('end', () => resolve({ status, setCookie }));
        stream.end(body);
      });
      const first = await answer('/', 'GET', undefined);
      const cookie = `4DSID=${/4DSID=([0-9a-f-]{36})/.exec(first.setCookie)?.[1]}`;

      // Its own connection, which the client drops mid-body (a tab closed): no end of stream comes first.
      const leaving = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
      leaving.on('error', () => {});
      const upload = leaving.request({ ':path': '/upload', ':method': 'POST', cookie, 'content-type': 'multipart/form-data; boundary=b' });
      upload.on('error', () => {});
      upload.write('--b\r\nContent-Disposition: form-data; name="f"\r\n\r\npart');
      await receiving.promise;
      leaving.destroy(); // the client leaves mid-body
      await until(() => handlerFailed === 1, 'the reader failed');
      const next = await answer('/', 'GET', cookie);
      assert.equal(next.status, 200, 'the session is served again');
      assert.deepEqual(errors.map((e) => e.code), [], 'an upload its client cut is not a failure');

      const failed = await answer('/upload', 'POST', cookie, '--b\r\nno end of form');
      assert.equal(failed.status, 500);
      assert.deepEqual(errors.map((e) => `${e.code} ${String((e.cause as Error | undefined)?.message)}`), ['ERR_SESSION_HANDLER_FAILED Unexpected end of form'], 'with its client there, the same error is a failure');
    } finally {
      client.close();
      server.close();
    }
  });
});
