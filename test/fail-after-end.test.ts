// A handler that fails after it ended its response (node:http, Express): the failure is reported, and
// the finished response still reaches its client whole.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import express from 'express';
import { ManualClock } from '../src/index.js';
import { engineWithErrors } from './helpers.js';
import { createServer } from '../src/adapters/node/index.js';
import { sessions as expressSessions } from '../src/adapters/express/index.js';
import { listen } from './contract/app.js';
import { until } from './contract/harness.js';

const GUARD = { timeout: 20_000 };

/** The length of the body the client received, or why it did not receive it whole. */
function download(url: string, path: string): Promise<{ status: number; bytes: number; complete: boolean }> {
  return new Promise((resolve, reject) => {
    http.get(`${url}${path}`, { agent: false }, (res) => {
      let bytes = 0;
      res.on('data', (chunk: Buffer) => { bytes += chunk.length; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, complete: true }));
      res.on('aborted', () => resolve({ status: res.statusCode ?? 0, bytes, complete: false }));
      res.on('error', () => resolve({ status: res.statusCode ?? 0, bytes, complete: false }));
    }).on('error', reject);
  });
}

const BIG = Buffer.alloc(32 * 1024 * 1024, 97);

for (const server of ['node:http', 'Express'] as const) {
  for (const when of ['synchronously', 'after an await'] as const) {
    test(`${server}, a handler that ends its response then fails ${when}: the failure is reported, and the finished response reaches its client whole (it is not cut mid-transfer)`, GUARD, async () => {
      const { engine, errors } = engineWithErrors({ clock: new ManualClock() });
      const fail = async (res: http.ServerResponse): Promise<void> => {
        res.end(BIG);
        if (when === 'after an await') await null;
        throw new Error('post-response work failed');
      };
      let listening;
      if (server === 'node:http') {
        listening = await listen(createServer(engine, (_req, res) => (when === 'synchronously' ? failSync(res) : fail(res))));
      } else {
        const app = express();
        app.set('env', 'test');
        app.use(expressSessions(engine));
        app.get('/', (_req, res) => (when === 'synchronously' ? failSync(res) : fail(res)));
        listening = await listen(http.createServer(app));
      }
      try {
        const got = await download(listening.url, '/');
        await until(() => errors.length === 1, 'the failure is reported');
        assert.equal(errors[0]?.code, 'ERR_SESSION_HANDLER_FAILED');
        assert.deepEqual(got, { status: 200, bytes: BIG.length, complete: true });
        await until(() => engine.stats().busySessions === 0, 'the process is given back');
      } finally {
        await engine.stop();
        await listening.close();
      }
    });
  }
}

function failSync(res: http.ServerResponse): void {
  res.end(BIG);
  throw new Error('post-response work failed');
}
