// The contract against the Express adapter (app.use(sessions(engine)), req.proc), then what is
// Express's own: errors with a 4xx status, your error handlers, middlewares reading bodies from events.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express, { type NextFunction, type Request, type Response } from 'express';
import { SessionEngine } from '../../src/index.js';
import { sessions } from '../../src/adapters/express/index.js';
import { request, sessionIdOf } from '../helpers.js';
import { listen, type ContractServer } from './app.js';
import { expectCutAfterTheHead, GUARD, json, slowPost } from './harness.js';
import { contractSuite } from './suite.js';

contractSuite('express', (engine, app) => {
  const server = express();
  server.use(sessions(engine));
  server.use(express.text());
  server.use(async (req, res) => {
    const answer = await app.handle({ path: req.path, proc: req.proc, body: typeof req.body === 'string' ? req.body : '' });
    for (const cookie of answer.cookies ?? []) res.append('Set-Cookie', cookie);
    res.type('text/plain').send(answer.body);
  });
  return listen(http.createServer(server));
});

describe('express adapter: the framework idiom', () => {
  async function withExpress(build: (app: express.Express, engine: SessionEngine) => void, body: (server: ContractServer, engine: SessionEngine, errors: unknown[]) => Promise<void>): Promise<void> {
    const engine = new SessionEngine();
    const errors: unknown[] = [];
    engine.on('error', (error) => errors.push(error));
    const app = express();
    app.set('env', 'test'); // Express's default handler logs errors to the console outside 'test'
    app.use(sessions(engine));
    build(app, engine);
    const server = await listen(http.createServer(app));
    try {
      await body(server, engine, errors);
    } finally {
      await engine.stop();
      await server.close();
    }
  }

  test('an error naming a 4xx status (http-errors style) gets Express\'s usual answer and is not a reported failure', GUARD, async () => {
    await withExpress((app) => {
      app.get('/missing', () => { throw Object.assign(new Error('no such page'), { status: 404, expose: true }); });
    }, async (server, _engine, errors) => {
      const response = await request(server.url, { path: '/missing' });
      assert.equal(response.status, 404);
      assert.deepEqual(errors, []);
    });
  });

  test('your own error handler answers first; next(err) hands the error on to the generic 500 and the report', GUARD, async () => {
    const seen: string[] = [];
    await withExpress((app) => {
      app.get('/mine', () => { throw new Error('mine secret'); });
      app.get('/passed-on', () => { throw new Error('passed secret'); });
      app.use((error: Error, req: Request, res: Response, next: NextFunction) => {
        seen.push(error.message);
        if (req.path === '/mine') res.status(502).send('my own page');
        else next(error);
      });
    }, async (server, _engine, errors) => {
      const mine = await request(server.url, { path: '/mine' });
      assert.deepEqual([mine.status, mine.body], [502, 'my own page']);
      const passed = await request(server.url, { path: '/passed-on' });
      assert.deepEqual([passed.status, passed.body], [500, 'Internal Server Error\n']);
      assert.deepEqual(seen, ['mine secret', 'passed secret']);
      assert.deepEqual(errors.map((e) => ((e as Error).cause as Error).message), ['passed secret'], 'only what reached the sessions handler is reported');
    });
  });

  test('a middleware reading the body from stream events keeps the process current: a logout there closes at once', GUARD, async () => {
    await withExpress((app, engine) => {
      // Hand-rolled, like many body middlewares: late chunks arrive from the HTTP parser, outside any request context.
      app.use((req, _res, next) => {
        let body = '';
        req.setEncoding('utf8');
        req.on('data', (chunk: string) => { body += chunk; });
        req.on('end', () => { req.body = body; next(); });
      });
      app.post('/logout', async (req, res) => {
        const sid = engine.currentSessionId();
        res.json({ sid, closed: await engine.closeSession(req.proc.sessionId), body: req.body as unknown });
      });
      app.get('/', (req, res) => { res.send(req.proc.sessionId); });
    }, async (server, engine) => {
      const id = sessionIdOf(await request(server.url));
      assert.ok(id);
      const busy = (): boolean => engine.sessions().some((s) => s.id === id && s.busy);
      const logout = await slowPost(server.url, '/logout', 'bye', `4DSID=${id}`, busy);
      assert.deepEqual(json(logout), { sid: id, closed: true, body: 'bye' });
    });
  });

  test('registered again on a router the app mounts: the request keeps the one process it has (no second session, no wait behind itself), one session cookie', GUARD, async () => {
    await withExpress((app, engine) => {
      const router = express.Router();
      router.use(sessions(engine));
      router.get('/', (req, res) => { res.send(req.proc.sessionId); });
      app.use('/r', router);
    }, async (server, engine) => {
      const first = await request(server.url, { path: '/r/' });
      const id = sessionIdOf(first);
      assert.equal(first.body, id);
      assert.equal(first.setCookies.filter((c) => c.startsWith('4DSID=')).length, 1);
      assert.equal(engine.sessions().length, 1, 'no orphan session');
      const again = await request(server.url, { path: '/r/', cookie: `4DSID=${id}` });
      assert.deepEqual([again.status, again.body], [200, id]);
    });
  });

  test('on a mounted sub-app only: every response carries the session cookie once', GUARD, async () => {
    const engine = new SessionEngine();
    const app = express();
    const sub = express();
    sub.use(sessions(engine));
    sub.get('/', (req, res) => { res.send(req.proc.sessionId); });
    app.use('/sub', sub);
    const server = await listen(http.createServer(app));
    try {
      const first = await request(server.url, { path: '/sub/' });
      assert.equal(first.setCookies.filter((c) => c.startsWith('4DSID=')).length, 1);
      const id = sessionIdOf(first);
      const again = await request(server.url, { path: '/sub/', cookie: `4DSID=${id}` });
      assert.deepEqual([again.status, again.body], [200, id]);
      assert.equal(again.setCookies.filter((c) => c.startsWith('4DSID=')).length, 1);
    } finally {
      await engine.stop();
      await server.close();
    }
  });

  test('a handler that fails after the head was sent: the connection is cut, the failure reported, and the process freed (the next request of the session is served)', GUARD, async () => {
    await withExpress((app) => {
      app.get('/partial', (_req, res) => {
        res.write('partial');
        throw new Error('late secret');
      });
      app.get('/', (req, res) => { res.send(req.proc.sessionId); });
    }, async (server, _engine, errors) => {
      await expectCutAfterTheHead(server, errors);
    });
  });

  test('res.sendFile with a callback that ends the response on an error (docs/adapters.md): a download the client cancels frees the process at once', GUARD, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lws-sendfile-'));
    const file = join(dir, 'big.bin');
    await writeFile(file, Buffer.alloc(32 * 1024 * 1024)); // far more than the socket buffers hold
    try {
      await withExpress((app) => {
        app.get('/file', (_req, res) => { res.sendFile(file, (err) => { if (err) res.end(); }); });
        app.get('/', (req, res) => { res.send(req.proc.sessionId); });
      }, async (server, engine, errors) => {
        const id = sessionIdOf(await request(server.url));
        assert.ok(id);
        await new Promise<void>((resolve) => {
          const url = new URL(`${server.url}/file`);
          const req = http.request({ host: url.hostname, port: url.port, path: url.pathname, headers: { cookie: `4DSID=${id}` }, agent: false }, (res) => {
            res.once('data', () => { req.destroy(); resolve(); }); // cancelled after the first bytes
          });
          req.on('error', () => {});
          req.end();
        });
        // Within the test's guard, far below closeTimeoutMs (30 s): the process was not held.
        const next = await request(server.url, { cookie: `4DSID=${id}` });
        assert.deepEqual([next.status, next.body], [200, id]);
        assert.equal(engine.stats().busySessions, 0);
        assert.deepEqual(errors, []);
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('sessions(engine) refuses anything but an engine', () => {
    assert.throws(() => sessions({} as SessionEngine), TypeError);
  });
});
