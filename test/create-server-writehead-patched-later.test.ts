// Instrumentation (APM agents, OpenTelemetry's http instrumentation) patches
// http.ServerResponse.prototype.writeHead, often after the application made its server. The adapter's
// response class must go on calling the writeHead its base class has at each call, as it did before
// createServer took a ServerResponse option (and as appEndSeenOn does for end and destroy).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { SessionEngine } from '../src/index.js';
import { request, startServer } from './helpers.js';

test("createServer's responses call a writeHead patched on http.ServerResponse.prototype after the server was made", async () => {
  const engine = new SessionEngine();
  const server = await startServer(engine, (_req, res) => {
    res.end('ok');
  });
  const original = http.ServerResponse.prototype.writeHead;
  let patchedCalls = 0;
  http.ServerResponse.prototype.writeHead = function (this: http.ServerResponse, ...args: unknown[]) {
    patchedCalls++;
    this.setHeader('x-instrumented', '1');
    return (original as (...a: unknown[]) => http.ServerResponse).apply(this, args);
  } as typeof original;
  try {
    const response = await request(server.url);
    assert.equal(response.status, 200);
    assert.ok(response.setCookies.some((c) => c.startsWith('4DSID=')), 'the session cookie is set');
    assert.equal(patchedCalls, 1, 'the writeHead patched after createServer ran');
  } finally {
    http.ServerResponse.prototype.writeHead = original;
    await engine.stop();
    await server.close();
  }
});
