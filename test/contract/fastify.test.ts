// The contract against the Fastify plugin (app.register(sessions, { engine }), request.proc), then
// what is Fastify's own: onClose, decorators, errors with a 4xx status, handlers that return nothing.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { ManualClock, SessionEngine, type CloseReason } from '../../src/index.js';
import { sessions } from '../../src/adapters/fastify/index.js';
import { deferred, request, sessionIdOf } from '../helpers.js';
import { listen, type ContractServer } from './app.js';
import { abandonedRequest, expectCutAfterTheHead, GUARD, post, until } from './harness.js';
import { contractSuite } from './suite.js';

contractSuite('fastify', async (engine, app) => {
  const server = Fastify();
  await server.register(sessions, { engine });
  server.all('/*', async (request, reply) => {
    const answer = await app.handle({ path: request.url.split('?')[0] ?? '/', proc: request.proc, body: typeof request.body === 'string' ? request.body : '' });
    for (const cookie of answer.cookies ?? []) reply.header('set-cookie', cookie);
    return reply.type('text/plain; charset=utf-8').send(answer.body);
  });
  await server.ready();
  return listen(server.server, () => server.close());
});

describe('fastify adapter: the framework idiom', () => {
  /** `before` registers what must come ahead of the plugin (hooks that run before its onRequest). */
  async function withFastify(build: (app: FastifyInstance) => void, body: (server: ContractServer, engine: SessionEngine, errors: unknown[], hooks: CloseReason[]) => Promise<void>, before?: (app: FastifyInstance) => void): Promise<void> {
    const hooks: CloseReason[] = [];
    const engine = new SessionEngine({ clock: new ManualClock(), onClose: (_proc, reason) => { hooks.push(reason); } });
    const errors: unknown[] = [];
    engine.on('error', (error) => errors.push(error));
    const app = Fastify();
    before?.(app);
    await app.register(sessions, { engine });
    build(app);
    await app.ready();
    const server = await listen(app.server, () => app.close());
    try {
      await body(server, engine, errors, hooks);
    } finally {
      await engine.stop();
      await server.close();
    }
  }

  test('request.proc is declared up front, and app.close() stops the engine: every session is hooked with shutdown', GUARD, async () => {
    await withFastify((app) => {
      assert.equal(app.hasRequestDecorator('proc'), true);
      app.get('/', async (request) => request.proc.sessionId);
    }, async (server, engine, _errors, hooks) => {
      for (let i = 0; i < 3; i++) assert.equal((await request(server.url)).status, 200);
      assert.equal(engine.sessions().length, 3);
      await server.close(); // fastify.close(): its onClose hook runs engine.stop()
      assert.deepEqual(hooks, ['shutdown', 'shutdown', 'shutdown']);
      assert.deepEqual(engine.sessions(), []);
    });
  });

  test('app.close() while a handler waits for its process\'s signal (the way to end a stream at a close): the stop aborts it, app.close() resolves and every session is hooked once', GUARD, async () => {
    const waiting = deferred();
    let fastify: FastifyInstance | undefined;
    await withFastify((app) => {
      fastify = app;
      app.get('/', async (request) => request.proc.sessionId);
      app.get('/stream', async (request) => {
        waiting.resolve();
        await new Promise((resolve) => request.proc.signal.addEventListener('abort', resolve, { once: true }));
        return 'ended by the close';
      });
    }, async (server, engine, errors, hooks) => {
      assert.equal((await request(server.url)).status, 200);
      const streaming = request(server.url, { path: '/stream' });
      await waiting.promise;
      await fastify!.close(); // the stop must start before Fastify waits for the request in flight
      assert.deepEqual(hooks, ['shutdown', 'shutdown']);
      assert.equal((await streaming).body, 'ended by the close');
      assert.deepEqual(engine.sessions(), []);
      assert.deepEqual(errors, []);
    });
  });

  test('an error naming a 4xx status gets Fastify\'s usual answer and is not a reported failure', GUARD, async () => {
    await withFastify((app) => {
      app.get('/forbidden', async () => { throw Object.assign(new Error('not yours'), { statusCode: 403 }); });
    }, async (server, _engine, errors) => {
      const response = await request(server.url, { path: '/forbidden' });
      assert.equal(response.status, 403);
      assert.equal((JSON.parse(response.body) as { message: string }).message, 'not yours');
      assert.deepEqual(errors, []);
    });
  });

  test('a handler that returns nothing after its client left still gives the process back once it settles', GUARD, async () => {
    const started = deferred();
    const gate = deferred();
    await withFastify((app) => {
      app.get('/', async (request) => request.proc.sessionId);
      // Fastify sends nothing for an aborted request whose handler resolves undefined: only the
      // handler's own end can free the process.
      app.get('/quiet', async () => {
        started.resolve();
        await gate.promise;
      });
    }, async (server, engine) => {
      const id = sessionIdOf(await request(server.url));
      assert.ok(id);
      await abandonedRequest(server, '/quiet', `4DSID=${id}`, started.promise);
      assert.equal(engine.stats().busySessions, 1, 'held while the handler runs');
      gate.resolve();
      await until(() => engine.stats().busySessions === 0, 'the process is given back');
      assert.equal((await request(server.url, { cookie: `4DSID=${id}` })).body, id);
    });
  });

  test('an async handler that hijacks its reply (Fastify never reports it settled): the process is free once the handler ends the raw response, before or after an await', GUARD, async () => {
    await withFastify((app) => {
      app.get('/', async (request) => request.proc.sessionId);
      // Goes on after its reply has finished: its reply (of the root context, never hijacked) is asked
      // first whether it was hijacked, and carries no mark at all.
      app.get('/after-send', async (request, reply) => {
        reply.send(request.proc.sessionId);
        await new Promise<void>((resolve) => setImmediate(resolve));
      });
      app.get('/hijack-now', async (request, reply) => {
        reply.hijack();
        reply.raw.end(request.proc.sessionId);
      });
      app.get('/hijack-later', async (request, reply) => {
        await new Promise<void>((resolve) => setImmediate(resolve));
        reply.hijack();
        reply.raw.end(request.proc.sessionId);
      });
    }, async (server, engine, errors) => {
      const id = sessionIdOf(await request(server.url));
      assert.ok(id);
      for (const path of ['/after-send', '/hijack-now', '/hijack-later']) {
        assert.equal((await request(server.url, { path, cookie: `4DSID=${id}` })).body, id);
        await until(() => engine.stats().busySessions === 0, `the process is given back after ${path}`);
        assert.equal((await request(server.url, { cookie: `4DSID=${id}` })).body, id);
      }
      assert.deepEqual(errors, []);
    });
  });

  const QUEUED_BODIES = {
    'a text body': 'Content-Type: text/plain\r\nContent-Length: 10\r\n\r\n0123456789',
    'a JSON content type with Content-Length: 0 (fetch with no body)': 'Content-Type: application/json\r\nContent-Length: 0\r\n\r\n',
  } as const;
  for (const [what, rest] of Object.entries(QUEUED_BODIES)) {
    test(`a POST with ${what} whose client left while it waited for the process: its turn frees the process at once (Fastify's parser would wait for ever on the destroyed request), nothing reported`, GUARD, async () => {
      const gate = deferred<void>();
      let formRuns = 0;
      await withFastify((app) => {
        app.get('/hold', async () => { await gate.promise; return 'held'; });
        app.post('/form', async (request) => { formRuns++; return String(request.body); });
        app.get('/', async (request) => request.proc.sessionId);
      }, async (server, engine, errors) => {
        const id = sessionIdOf(await request(server.url));
        assert.ok(id);
        const held = request(server.url, { path: '/hold', cookie: `4DSID=${id}` });
        await until(() => engine.sessions()[0]?.busy === true, '/hold runs');
        const socket = net.connect(Number(new URL(server.url).port), '127.0.0.1');
        socket.on('error', () => {}); // the hang-up is ours
        socket.write(`POST /form HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: 4DSID=${id}\r\n${rest}`);
        await until(() => engine.sessions()[0]?.queuedRequests === 1, 'the POST waits for the process');
        await new Promise((resolve) => setTimeout(resolve, 100)); // its bytes have all been read by the server
        socket.destroy();
        await new Promise((resolve) => setTimeout(resolve, 100));
        gate.resolve();
        assert.equal((await held).body, 'held');
        await until(() => engine.stats().busySessions === 0, 'the process is given back at once (no clock moves)');
        assert.equal((await request(server.url, { cookie: `4DSID=${id}` })).body, id);
        assert.equal(formRuns, 0, 'its body was gone with its client');
        assert.deepEqual(errors, []);
      });
    });
  }

  test('a body an earlier onRequest hook read to its end (the request stream then says destroyed) is no client that left: the route answers', GUARD, async () => {
    await withFastify((app) => {
      app.addContentTypeParser('text/plain', (_request, _payload, done) => { done(null, 'read by the hook'); });
      app.post('/form', async (request) => String(request.body));
    }, async (server, _engine, errors) => {
      const response = await post(server.url, '/form', '0123456789');
      assert.deepEqual([response.status, response.body], [200, 'read by the hook']);
      assert.deepEqual(errors, []);
    }, (app) => {
      app.addHook('onRequest', (request, _reply, done) => {
        if (request.method !== 'POST') { done(); return; }
        request.raw.resume();
        request.raw.on('end', () => setImmediate(done));
      });
    });
  });

  test('a handler that writes the raw head and then throws: the connection is cut, the failure reported once (not again for the error answer that cannot be written), the process freed', GUARD, async () => {
    await withFastify((app) => {
      app.get('/partial', (_request, reply) => {
        reply.raw.writeHead(200, { 'content-type': 'text/plain' });
        throw new Error('late secret');
      });
      app.get('/', async (request) => request.proc.sessionId);
    }, async (server, _engine, errors) => {
      await expectCutAfterTheHead(server, errors);
    });
  });

  test('register(sessions) refuses anything but an engine', async () => {
    const app = Fastify();
    await assert.rejects(async () => { await app.register(sessions, { engine: {} as SessionEngine }); }, /engine must be a SessionEngine/);
  });
});
