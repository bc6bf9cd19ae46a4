// The HTTP contract on the Redis store: the same suite as every adapter, through node:http, with each
// engine's sessions in a real Redis (REDIS_URL) under a key prefix of its own, deleted afterwards.
import { after, test } from 'node:test';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { createServer, readBody } from '../../src/adapters/node/index.js';
import { createRedisStore } from '../../src/redis/index.js';
import { deleteKeys, REDIS_URL } from '../redis-support.js';
import { listen } from './app.js';
import { runContractOn } from './harness.js';
import { contractSuite } from './suite.js';

const base = `lws-test:contract-${randomBytes(6).toString('hex')}:`;
const admin = new Redis(REDIS_URL, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, connectTimeout: 2_000 });
admin.on('error', () => {});
const reachable = await admin.connect().then(() => admin.ping()).then(() => true, (error: unknown) => String(error));

if (reachable === true) {
  let engines = 0;
  // A short poll keeps waits for a busy process or a remote close brisk (pub/sub wakes them first anyway).
  runContractOn(() => createRedisStore({ url: REDIS_URL, prefix: `${base}${++engines}:`, pollIntervalMs: 20 }));
  after(async () => {
    await deleteKeys(admin, base);
    await admin.quit();
  });
  contractSuite('node:http on the Redis store', (engine, app) => listen(createServer(engine, async (req, res, proc) => {
    const body = (await readBody(req)).toString('utf8');
    const answer = await app.handle({ path: new URL(req.url ?? '/', 'http://x').pathname, proc, body });
    if (answer.cookies !== undefined) res.setHeader('set-cookie', [...answer.cookies]);
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end(answer.body);
  })));
} else {
  const message = `Redis is not reachable at REDIS_URL=${REDIS_URL} (${reachable})`;
  admin.disconnect();
  if (process.env.CI === 'true') {
    test('the HTTP contract on the Redis store', () => { throw new Error(`${message}. CI=true: Redis tests must run, not skip.`); });
  } else {
    console.warn(`\n⚠ SKIPPING THE REDIS CONTRACT: ${message}\n`);
    test('the HTTP contract on the Redis store', { skip: message }, () => {});
  }
}
