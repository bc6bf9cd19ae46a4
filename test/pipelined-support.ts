// Pipelining two sessions' requests on one connection kept open, for the pipelined-release tests.
import * as http from 'node:http';
import * as net from 'node:net';
import type { ContractServer } from './contract/app.js';

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
