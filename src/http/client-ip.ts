import { isIP } from 'node:net';
import type { RuntimeOptions } from '../options.js';

/** `::ffff:127.0.0.1` and `127.0.0.1` are one client: compare IPv4 clients in one form. */
export function normalizeIp(address: string | undefined): string {
  if (address === undefined) return '';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

/**
 * The client's address under the engine's `trustProxy` option, the one rule every adapter uses (a
 * framework's own proxy settings play no part, so every adapter sees the same client):
 * `false` the socket's address; `true` the leftmost X-Forwarded-For entry; a number n the address n hops
 * back from the socket in [...X-Forwarded-For, socket] (the leftmost when the chain is shorter). Without
 * an X-Forwarded-For header, or when the entry chosen is not an IP address (a client can write anything
 * there: `unknown`, a port, a script), it is the socket's address.
 */
export function clientIp(remoteAddress: string | undefined, forwardedFor: string | undefined, trustProxy: RuntimeOptions['trustProxy']): string {
  const chosen = trustedEntry(forwardedFor, trustProxy);
  return chosen !== undefined && isIP(chosen) !== 0 ? normalizeIp(chosen) : normalizeIp(remoteAddress);
}

/**
 * Whether the client's connection is HTTPS under `trustProxy`: the socket's TLS, or, behind trusted
 * proxies, the X-Forwarded-Proto entry chosen as for X-Forwarded-For (`true` the leftmost, n the n-th
 * from the right) saying `https`. Without the header it is the socket's alone.
 */
export function clientIsSecure(socketIsTls: boolean, forwardedProto: string | undefined, trustProxy: RuntimeOptions['trustProxy']): boolean {
  if (socketIsTls) return true;
  return trustedEntry(forwardedProto, trustProxy)?.toLowerCase() === 'https';
}

/** The entry of a proxy header's comma-separated chain that `trustProxy` trusts, if any. */
function trustedEntry(header: string | undefined, trustProxy: RuntimeOptions['trustProxy']): string | undefined {
  if (trustProxy === false || header === undefined || header === '') return undefined;
  const chain = header.split(',').map((entry) => entry.trim()).filter((entry) => entry !== '');
  if (chain.length === 0) return undefined;
  return trustProxy === true ? chain[0] : chain[Math.max(0, chain.length - trustProxy)];
}
