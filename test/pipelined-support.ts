// Pipelining two sessions' requests on one connection kept open, for the pipelined-release tests.
import * as http from 'node:http';
import * as net from 'node:net';
import express from 'express';
import Fastify from 'fastify';
import type { SessionEngine } from '../src/index.js';
import { createServer } from '../src/adapters/node/index.js';
import { sessions as expressSessions } from '../src/adapters/express/index.js';
import { sessions as fastifySessions } from '../src/adapters/fastify/index.js';
import { listen, type ContractServer } from './contract/app.js';

/** The application of a pipelined-release test: answers `path` for `sessionId` through `end`. */
export type Answer = (path: string, sessionId: string, end: (body: string) => void) => Promise<void> | void;

/** A GET on a connection of its own; resolves to the `name=value` of the first Set-Cookie. */
export function get(url: string, cookie?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get(`${url}/`, { agent: false, headers: cookie === undefined ? {} : { cookie } }, (res) => {
      res.resume();
      res.on('end', () => resolve((res.headers['set-cookie'] ?? [])[0]?.split(';')[0] ?? ''));
    }).on('error', reject);
  });
}

/** Two sessions' cookies, and a raw connection on which `/hold` (session a) goes ahead of `/queued` (session b). */
export async function pipelined(server: ContractServer): Promise<{ socket: net.Socket; bId: string }> {
  const a = await get(server.url);
  const b = await get(server.url);
  const { port } = server.server.address() as net.AddressInfo;
  const socket = new net.Socket();
  await new Promise<void>((resolve, reject) => socket.connect(port, '127.0.0.1', resolve).once('error', reject));
  socket.on('error', () => {});
  socket.write(`GET /hold HTTP/1.1\r\nHost: x\r\nCookie: ${a}\r\n\r\nGET /queued HTTP/1.1\r\nHost: x\r\nCookie: ${b}\r\n\r\n`);
  return { socket, bId: b.slice('4DSID='.length) };
}

type ServerStart = (engine: SessionEngine, answer: Answer) => Promise<ContractServer>;

/** Servers whose handler's end the adapter cannot see: the application ending the response says it is done. */
export const unseenHandlerServers: Record<string, ServerStart> = {
  'node:http, callback-style handler': (engine, answer) => listen(createServer(engine, (req, res, proc) => {
    void answer(req.url ?? '/', proc.sessionId, (body) => res.end(body));
  })),
  express: async (engine, answer) => {
    const app = express();
    app.use(expressSessions(engine));
    app.use((req, res) => { void answer(req.url, req.proc.sessionId, (body) => res.send(body)); });
    return listen(http.createServer(app));
  },
  'fastify, hijacked reply': async (engine, answer) => {
    const app = Fastify();
    await app.register(fastifySessions, { engine });
    app.get('/*', async (request, reply) => {
      reply.hijack();
      await answer(request.url, request.proc.sessionId, (body) => reply.raw.end(body));
    });
    await app.ready();
    return listen(app.server, () => app.close());
  },
};

/** The same with a node:http handler returning a promise (its settling is seen): the control. */
export const pipelinedServers: Record<string, ServerStart> = {
  'node:http, async handler (control)': (engine, answer) => listen(createServer(engine, async (req, res, proc) => {
    await answer(req.url ?? '/', proc.sessionId, (body) => res.end(body));
  })),
  ...unseenHandlerServers,
};
