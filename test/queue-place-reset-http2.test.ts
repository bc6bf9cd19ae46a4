// HTTP/2 (h2c, Hono on @hono/node-server): a request waiting for its session's process whose stream the
// client resets (RST_STREAM: a fetch aborted, a tab navigating away) keeps its place in the session's
// queue until its turn comes (then it runs, as the contract suite's "a request whose client left while
// it waited for the process still runs in turn" requires), so with maxQueuedRequests reached the
// session's next request is refused 503 "too many requests queued" while the client has only one
// request there. The same over HTTP/1.1. Withdrawing such a waiter breaks that contract; keeping it in
// line but not counting it against maxQueuedRequests (both stores: Redis counts waiters in wq:<id>) is
// the open design. Marked to do until then.
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
  test(`HTTP/2, ${storeName}: a queued request whose stream the client reset gives its queue place back`, { timeout: 10_000, todo: 'a waiting acquire cannot be withdrawn (HTTP/1.1 too)' }, async (t) => {
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
