// The same contract against the Express adapter on Express 4 (the `express4` alias of express@4): the
// adapter supports Express 4 and 5, and no rule may differ between them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { createRequire } from 'node:module';
import express from 'express4';
import { sessions } from '../../src/adapters/express/index.js';
import { listen } from './app.js';
import { contractSuite } from './suite.js';

const version = (createRequire(import.meta.url)('express4/package.json') as { version: string }).version;

test('the express4 alias is Express 4', () => {
  assert.match(version, /^4\./);
});

contractSuite('express 4', (engine, app) => {
  const server = express();
  server.use(sessions(engine));
  server.use(express.text());
  // Express 4 does not look at the promise a middleware returns: its idiom hands a rejection to next(error).
  server.use((req, res, next) => {
    app.handle({ path: req.path, proc: req.proc, body: typeof req.body === 'string' ? req.body : '' }).then((answer) => {
      for (const cookie of answer.cookies ?? []) res.append('Set-Cookie', cookie);
      res.type('text/plain').send(answer.body);
    }, next);
  });
  return listen(http.createServer(server));
});
