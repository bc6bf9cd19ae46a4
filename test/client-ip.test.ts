import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clientIp, normalizeIp } from '../src/http/client-ip.js';

test('clientIp follows trustProxy: false the socket, true the leftmost X-Forwarded-For, n hops back from the socket; an entry with a port counts by its address', () => {
  const cases: Array<[forwardedFor: string | undefined, trust: boolean | number, expected: string]> = [
    [undefined, false, '10.0.0.1'],
    ['1.1.1.1', false, '10.0.0.1'],
    [undefined, true, '10.0.0.1'],
    ['', 1, '10.0.0.1'],
    [' , ,', true, '10.0.0.1'],
    ['1.1.1.1', true, '1.1.1.1'],
    ['1.1.1.1, 2.2.2.2', true, '1.1.1.1'],
    ['1.1.1.1, 2.2.2.2', 1, '2.2.2.2'],
    ['1.1.1.1, 2.2.2.2', 2, '1.1.1.1'],
    ['1.1.1.1, 2.2.2.2', 5, '1.1.1.1'],
    ['::ffff:3.3.3.3', 1, '3.3.3.3'],
    ['1.1.1.1,2.2.2.2,  4.4.4.4 ', 1, '4.4.4.4'],
    ['unknown', true, '10.0.0.1'],
    ['1.1.1.1:80, 2.2.2.2', true, '1.1.1.1'],
    ['1.1.1.1, 203.0.113.5:41000', 1, '203.0.113.5'],
    ['[2001:db8::1]:41000', 1, '2001:db8::1'],
    ['[2001:db8::1]', 1, '2001:db8::1'],
    ['[1.1.1.1]:80', 1, '10.0.0.1'],
    ['1.1.1.1:99999999', 1, '10.0.0.1'],
    ['::FFFF:3.3.3.3', 1, '3.3.3.3'],
    ['unknown:80', 1, '10.0.0.1'],
    ['<script>', 1, '10.0.0.1'],
    ['2001:db8::1', 1, '2001:db8::1'],
  ];
  for (const [forwardedFor, trust, expected] of cases) {
    assert.equal(clientIp('::ffff:10.0.0.1', forwardedFor, trust), expected, `${forwardedFor} / ${trust}`);
  }
  assert.equal(normalizeIp(undefined), '');
  assert.equal(normalizeIp('::1'), '::1');
});

test('behind a proxy, every spelling of one IPv6 client is one address, the form a socket gives (RFC 5952), and an IPv4-mapped one in hex is its IPv4', () => {
  const spellings: Array<[forwardedFor: string, expected: string]> = [
    ['2001:db8::1', '2001:db8::1'],
    ['2001:DB8::1', '2001:db8::1'],
    ['2001:0db8:0:0:0:0:0:1', '2001:db8::1'],
    ['[2001:0DB8::0:1]:41000', '2001:db8::1'],
    ['fe80::1%eth0', 'fe80::1'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['::ffff:102:304', '1.2.3.4'],
    ['[::FFFF:0102:0304]', '1.2.3.4'],
  ];
  for (const [forwardedFor, expected] of spellings) {
    assert.equal(clientIp('127.0.0.1', forwardedFor, true), expected, forwardedFor);
  }
});
