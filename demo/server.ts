// The example app `npm start` serves: a visit counter, a name kept in the session, logout, and a view of
// live sessions. It shows the session lifecycle end to end; it imports only the public entry points.
import { SessionEngine, type CloseReason } from '../src/index.js';
import { createServer } from '../src/adapters/node/index.js';
import { renderPage } from './page.js';

interface DemoVars {
  visits: number;
  name: string;
}

const port = Number(process.env.PORT ?? 8080);
const closes: { sessionId: string; reason: CloseReason; at: Date; vars: DemoVars }[] = [];

const engine = new SessionEngine<DemoVars>({
  maxSessions: 5, // small on purpose: open a sixth browser and watch the least recently active one close
  inactiveProcessTimeoutMs: 5 * 60_000,
  init: () => ({ visits: 0, name: '' }),
  onClose: (proc, reason) => {
    // 4D's On Web Legacy Close Session: the context is still intact here.
    closes.unshift({ sessionId: proc.sessionId, reason, at: new Date(), vars: { ...proc.vars } });
    closes.length = Math.min(closes.length, 20);
  },
});
engine.on('error', (error) => process.stderr.write(`session error: ${error.code} ${error.message}\n`));

const server = createServer(engine, async (req, res, proc) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (req.method === 'POST' && url.pathname === '/name') {
    const body = await readForm(req, 1024);
    proc.vars.name = (body.get('name') ?? '').slice(0, 40);
    return redirect(res, '/');
  }
  if (req.method === 'POST' && url.pathname === '/logout') {
    await engine.closeSession(proc.sessionId); // WEB LEGACY CLOSE SESSION from the session's own request
    return redirect(res, '/');
  }
  if (req.method === 'POST' && url.pathname === '/close') {
    const id = (await readForm(req, 1024)).get('id') ?? '';
    await engine.closeSession(id); // from another session: the closed one gets a new id next time
    return redirect(res, '/');
  }
  if (url.pathname !== '/') {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('Not found\n');
    return;
  }
  proc.vars.visits++;
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end(renderPage({ me: proc.sessionId, vars: proc.vars, sessions: engine.sessions(), stats: engine.stats(), closes }));
});

function redirect(res: import('node:http').ServerResponse, location: string): void {
  res.writeHead(303, { location }).end();
}

async function readForm(req: import('node:http').IncomingMessage, maxBytes: number): Promise<URLSearchParams> {
  let body = '';
  for await (const chunk of req) {
    body += String(chunk);
    if (body.length > maxBytes) break;
  }
  return new URLSearchParams(body.slice(0, maxBytes));
}

server.listen(port, () => process.stdout.write(`legacy-web-sessions demo on http://localhost:${port}\n`));

let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopping) {
      process.stderr.write(`second ${signal}: exiting without waiting for session hooks\n`);
      process.exit(1);
    }
    stopping = true;
    process.stdout.write(`${signal}: closing every session (hooks run), then exiting\n`);
    void engine.stop().then(() => server.close(() => process.exit(0)));
  });
}
