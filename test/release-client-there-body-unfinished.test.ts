// What decides that a handler's error is the client's doing rather than the application's failure is
// both halves at once: the request's body never arrived whole AND its client has gone. A handler that
// fails while its client still sends the body (an upload refused part-way) is the application's failure,
// reported and answered 500; so is a plain error after a client left whose request was whole (a GET).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as http from 'node:http';
import * as net from 'node:net';
import { once } from 'node:events';
import { deferred, eventually, request, sessionIdOf, startServer } from './helpers.js';
import { withEngine } from './release-support.js';

test('node:http, a handler that fails while its client is still sending the body: reported as the handler\'s failure, the client answered 500', { timeout: 20_000 }, async () => {
  await withEngine(async (engine, _clock, errors) => {
    const server = await startServer(engine, async (req: http.IncomingMessage, res: http.ServerResponse) => {
      if (req.method === 'POST') {
        await once(req, 'data');
        throw new Error('upload refused');
      }
      res.end('ok');
    });
    const cookie = `4DSID=${sessionIdOf(await request(server.url))}`;
    const socket = net.connect(Number(new URL(server.url).port), '127.0.0.1');
    try {
      socket.on('error', () => {});
      await once(socket, 'connect');
      let answer = '';
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => { answer += chunk; });
      socket.write(`POST /upload HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\nfirst part`);
      assert.ok(await eventually(() => errors.length > 0, 3_000), 'reported');
      assert.deepEqual(errors.map((e) => `${e.code} ${String((e.cause as Error | undefined)?.message)}`), ['ERR_SESSION_HANDLER_FAILED upload refused']);
      assert.ok(await eventually(() => answer.startsWith('HTTP/1.1 500'), 3_000), `answered 500 (${answer.slice(0, 40)})`);
    } finally {
      socket.destroy();
      await server.close();
    }
  });
});

test('node:http, a handler that fails with a plain error after the client of a whole request (a GET) left: reported as the handler\'s failure', { timeout: 20_000 }, async () => {
  await withEngine(async (engine, _clock, errors) => {
    const running = deferred();
    const server = await startServer(engine, async (req: http.IncomingMessage, res: http.ServerResponse) => {
      if (req.url === '/slow') {
        running.resolve();
        if (!res.destroyed) await once(res, 'close');
        throw new Error('went wrong after the client left');
      }
      res.end('ok');
    });
    const cookie = `4DSID=${sessionIdOf(await request(server.url))}`;
    const socket = net.connect(Number(new URL(server.url).port), '127.0.0.1');
    try {
      socket.on('error', () => {});
      await once(socket, 'connect');
      socket.write(`GET /slow HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\n\r\n`);
      await running.promise;
      socket.destroy(); // the client leaves; its request was whole
      assert.ok(await eventually(() => errors.length > 0, 3_000), 'reported');
      assert.deepEqual(errors.map((e) => `${e.code} ${String((e.cause as Error | undefined)?.message)}`), ['ERR_SESSION_HANDLER_FAILED went wrong after the client left']);
    } finally {
      socket.destroy();
      await server.close();
    }
  });
});
