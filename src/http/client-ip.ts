import { isIP, SocketAddress } from 'node:net';
import type { RuntimeOptions } from '../options.js';

/** `::ffff:127.0.0.1` (in any case) and `127.0.0.1` are one client: compare IPv4 clients in one form. */
export function normalizeIp(address: string | undefined): string {
  if (address === undefined) return '';
  // An IPv4 socket's address ('127.0.0.1') is its own form: only one starting with ':' can be mapped.
  return address.length > 7 && address.charCodeAt(0) === 58 && address.includes('.') && address.slice(0, 7).toLowerCase() === '::ffff:' ? address.slice(7) : address;
}

/**
 * The address in a proxy's entry, which some proxies write with the client's port (`203.0.113.5:41000`,
 * `[2001:db8::1]:41000`, `[2001:db8::1]`); undefined if it holds none.
 */
function addressOf(entry: string): string | undefined {
  const family = isIP(entry);
  if (family === 4) return entry;
  if (family === 6) return canonicalIpv6(entry);
  const bracketed = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(entry);
  if (bracketed !== null) return isIP(bracketed[1]!) === 6 ? canonicalIpv6(bracketed[1]!) : undefined;
  const withPort = /^([\d.]+):\d{1,5}$/.exec(entry);
  return withPort !== null && isIP(withPort[1]!) === 4 ? withPort[1] : undefined;
}

/**
 * One IPv6 address has many spellings (`2001:DB8::1`, `2001:0db8:0:0:0:0:0:1`, `::ffff:102:304` for
 * `::ffff:1.2.3.4`): a proxy writes what it likes, a socket gives the RFC 5952 form. Written in the
 * socket's form, one client is one address whichever proxy wrote it (a zone index, `%eth0`, is dropped:
 * it names an interface of the proxy's host, not the client).
 */
function canonicalIpv6(address: string): string {
  return new SocketAddress({ address, family: 'ipv6' }).address;
}

/**
 * The client's address under the engine's `trustProxy` option, the one rule every adapter uses (a
 * framework's own proxy settings play no part, so every adapter sees the same client):
 * `false` the socket's address; `true` the leftmost X-Forwarded-For entry; a number n the address n hops
 * back from the socket in [...X-Forwarded-For, socket] (the leftmost when the chain is shorter). An
 * entry with a port (as some proxies write it) counts by its address. Without an X-Forwarded-For header,
 * or when the entry chosen holds no IP address (a client can write anything there: `unknown`, a
 * script), it is the socket's address.
 */
export function clientIp(remoteAddress: string | undefined, forwardedFor: string | undefined, trustProxy: RuntimeOptions['trustProxy']): string {
  const chosen = trustedEntry(forwardedFor, trustProxy);
  const address = chosen === undefined ? undefined : addressOf(chosen);
  return normalizeIp(address ?? remoteAddress);
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
