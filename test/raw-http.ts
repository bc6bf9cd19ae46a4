// A raw HTTP/1.1 client for the tests over real sockets (fuzz-http, trust-proxy): any byte can be sent,
// which node:http's own client refuses, and what node:http itself refuses to read.
import assert from 'node:assert/strict';
import * as net from 'node:net';

// ---- what node:http itself refuses ----------------------------------------------------------------

/** node:http (llhttp, strict) answers 400 to a header value holding a control byte other than HTAB. */
export function hasControlByte(bytes: Buffer): boolean {
  for (const b of bytes) if ((b < 0x20 && b !== 0x09) || b === 0x7f) return true;
  return false;
}

/**
 * A header value as one line: CR LF inside it would end the header (or the whole head) on the client
 * side — that is the client splitting its own request, not a value the server receives — so a space goes
 * between them. Bare CR and bare LF stay, and node:http refuses them (400).
 */
export function oneLine(bytes: Buffer): Buffer {
  const out: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    out.push(bytes[i]!);
    if (bytes[i] === 0x0d && bytes[i + 1] === 0x0a) out.push(0x20);
  }
  return out.length === bytes.length ? bytes : Buffer.from(out);
}

/** node:http answers 431 past 16 KiB of header bytes (the default `maxHeaderSize`). */
export const NODE_MAX_HEADER_BYTES = 16 * 1024;

// ---- a raw HTTP/1.1 client ------------------------------------------------------------------------

export interface RawResponse {
  readonly status: number;
  readonly headers: readonly (readonly [string, string])[];
  readonly body: string;
}

export function headerValues(response: RawResponse, name: string): string[] {
  return response.headers.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v);
}

const RAW_TIMEOUT_MS = 5_000;

/** Sends bytes as they are on a new connection (`Connection: close`) and reads the whole answer. */
export function rawRequest(port: number, localAddress: string, bytes: Buffer): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress });
    const chunks: Buffer[] = [];
    // A wall-clock guard only: an answer that never comes is a failure to report, not a wait.
    socket.setTimeout(RAW_TIMEOUT_MS, () => {
      socket.destroy();
      reject(new Error(`no answer within ${RAW_TIMEOUT_MS} ms; received so far: ${JSON.stringify(Buffer.concat(chunks).toString('latin1').slice(0, 300))}`));
    });
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (error: NodeJS.ErrnoException) => {
      // The server may cut the connection after answering a malformed request before all was written.
      if (error.code !== 'ECONNRESET' && error.code !== 'EPIPE') reject(error);
    });
    socket.on('close', () => {
      try {
        resolve(parseRawResponse(Buffer.concat(chunks)));
      } catch (error) {
        reject(error);
      }
    });
    socket.end(bytes);
  });
}

export function parseRawResponse(data: Buffer): RawResponse {
  const text = data.toString('latin1');
  const headEnd = text.indexOf('\r\n\r\n');
  assert.ok(headEnd > 0, `no complete HTTP answer: ${JSON.stringify(text.slice(0, 200))}`);
  const [statusLine = '', ...lines] = text.slice(0, headEnd).split('\r\n');
  const match = /^HTTP\/1\.1 (\d{3}) /.exec(statusLine);
  assert.ok(match !== null, `bad status line ${JSON.stringify(statusLine)}`);
  const headers = lines.map((line) => {
    const colon = line.indexOf(':');
    return [line.slice(0, colon), line.slice(colon + 1).trim()] as const;
  });
  let body = text.slice(headEnd + 4);
  if (headers.some(([n, v]) => n.toLowerCase() === 'transfer-encoding' && v === 'chunked')) body = unchunk(body);
  return { status: Number(match[1]), headers, body: Buffer.from(body, 'latin1').toString('utf8') };
}

function unchunk(body: string): string {
  let out = '';
  let at = 0;
  for (;;) {
    const lineEnd = body.indexOf('\r\n', at);
    if (lineEnd < 0) return out;
    const size = parseInt(body.slice(at, lineEnd), 16);
    if (!(size > 0)) return out;
    out += body.slice(lineEnd + 2, lineEnd + 2 + size);
    at = lineEnd + 2 + size + 2;
  }
}
