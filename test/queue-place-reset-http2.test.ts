// HTTP/2 (h2c, Hono on @hono/node-server): a request waiting for its session's process whose stream the
// client resets (RST_STREAM: a fetch aborted, a tab navigating away) keeps its place in line (it still
// runs in turn, as the contract suite's "a request whose client left while it waited for the process
// still runs in turn" requires) but no longer counts against maxQueuedRequests: the session's next
// request is not refused 503 "too many requests queued" for a place held by nobody. HTTP/1.1 and the
// engine's seam: queue-client-left.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { createAdaptorServer } from '@hono/node-server';
import { Hono } from 'hono';
import { ManualClock, SessionEngine } from '../src/index.js';
import { sessions } from '../src/adapters/hono/index.js';
import { deferred, settle } from './helpers.js';
import { until } from './contract/harness.js';
import { storeChoices } from './store-choices.js';

function h2get(client: http2.ClientHttp2Session, path: string, cookie?: string, onStream?: (stream: http2.ClientHttp2Stream) => void): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const stream = client.request({ ':path': path, ...(cookie === undefined ? {} : { cookie }) });
    onStream?.(stream);
    let status = 0;
    let body = '';
    stream.on('response', (h) => { status = Number(h[':status']); });
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => { body += chunk; });
    stream.on('close', () => resolve({ status, body }));
    stream.on('error', () => {});
    stream.end();
  });
}

for (const [storeName, choose] of storeChoices()) {
  test(`HTTP/2, ${storeName}: a queued request whose stream the client reset gives its queue place back`, { timeout: 10_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const engine = new SessionEngine({ clock: new ManualClock(), maxQueuedRequests: 1, ...choice.options });
    const gate = deferred<void>();
    const app = new Hono();
    app.use(sessions(engine));
    app.get('/hold', async (c) => { await gate.promise; return c.text('held'); });
    app.get('/', (c) => c.text(c.get('proc').sessionId));
    const server = createAdaptorServer({ fetch: app.fetch, createServer: http2.createServer }) as http2.Http2Server;
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const client = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    client.on('error', () => {});
    try {
      const cookie = `4DSID=${(await h2get(client, '/')).body}`;
      const held = h2get(client, '/hold', cookie);
      await until(() => engine.sessions()[0]?.busy === true, '/hold runs');
      let queued: http2.ClientHttp2Stream | undefined;
      const cancelled = h2get(client, '/', cookie, (stream) => { queued = stream; });
      await until(() => engine.sessions()[0]?.queuedRequests === 1, 'the request waits for the process');
      queued!.close(http2.constants.NGHTTP2_CANCEL);
      await cancelled;
      await settle(20);
      const next = h2get(client, '/', cookie);
      await settle(20);
      gate.resolve();
      assert.equal((await next).status, 200, 'the session\'s only live waiting request is not refused for a full queue');
      await held;
    } finally {
      gate.resolve();
      client.destroy();
      await engine.stop();
      server.close();
    }
  });
}
