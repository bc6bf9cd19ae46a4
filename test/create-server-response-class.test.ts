// createServer's third argument is documented as http.createServer's options (plus `sessionless`):
// a ServerResponse class of the application's (instrumentation, helpers on `res`) must still be the
// class of every response, with the session cookie added on top of it, not dropped for the adapter's own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { SessionEngine } from '../src/index.js';
import { createServer } from '../src/adapters/node/index.js';
import { request, startServer } from './helpers.js';

test('createServer keeps a ServerResponse class given in its options: the handler gets one, its writeHead runs, and the cookie is still set', async () => {
  const heads: number[] = [];
  class AppResponse<Request extends http.IncomingMessage = http.IncomingMessage> extends http.ServerResponse<Request> {
    readonly fromApp = true;
    override writeHead(statusCode: number, reasonOrHeaders?: string | http.OutgoingHttpHeaders | http.OutgoingHttpHeader[], headers?: http.OutgoingHttpHeaders | http.OutgoingHttpHeader[]): this {
      heads.push(statusCode);
      return super.writeHead(statusCode, reasonOrHeaders as string | undefined, headers);
    }
  }
  const engine = new SessionEngine();
  const server = await startServer(engine, (_req, res) => {
    res.end(`fromApp=${(res as Partial<AppResponse>).fromApp === true}`);
  }, { ServerResponse: AppResponse as typeof http.ServerResponse });
  try {
    const response = await request(server.url);
    assert.equal(response.status, 200);
    assert.equal(response.body, 'fromApp=true', 'the response is of the class given in the options');
    assert.deepEqual(heads, [200], "the application's writeHead ran");
    assert.ok(response.setCookies.some((c) => c.startsWith('4DSID=')), 'the session cookie is still set');
  } finally {
    await engine.stop();
    await server.close();
  }
});

test('createServer refuses a ServerResponse option that is no http.ServerResponse class', () => {
  const engine = new SessionEngine();
  for (const bad of [class NotAResponse {}, 42, null]) {
    assert.throws(() => createServer(engine, (_req, res) => res.end(), { ServerResponse: bad as never }), { code: 'ERR_SESSION_INVALID_ARGUMENT' }, String(bad));
  }
});
