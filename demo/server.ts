// `npm start`: the Stockroom demo on http://localhost:8080. Environment: PORT, HOST, ADMIN_TOKEN, DEMO_DB.
// SIGTERM / SIGINT stop gracefully (every session's close hook saves to SQLite); a second signal exits at once.
import { DEFAULT_DB_PATH, startDemo } from './app.js';

const port = Number(process.env.PORT ?? 8080);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`PORT must be a port number (0-65535), got ${JSON.stringify(process.env.PORT)}\n`);
  process.exit(1);
}
const dbPath = process.env.DEMO_DB || DEFAULT_DB_PATH;
const demo = await startDemo({ port, host: process.env.HOST || undefined, dbPath, adminToken: process.env.ADMIN_TOKEN || undefined }).catch((error: unknown) => {
  // The usual causes (port taken, unwritable data directory, short ADMIN_TOKEN) need one line, not a stack.
  process.stderr.write(`Cannot start the demo: ${error instanceof Error ? error.message : String(error)}\n`);
  return process.exit(1);
});

const token = demo.tokenGenerated ? `${demo.adminToken}  (generated; set ADMIN_TOKEN to choose one)` : '(from ADMIN_TOKEN)';
const bearer = demo.tokenGenerated ? demo.adminToken : '$ADMIN_TOKEN';
process.stdout.write(`Stockroom, the legacy-web-sessions demo
  App      ${demo.url}
  Admin    ${demo.url}/admin   token: ${token}
  Metrics  curl -H "Authorization: Bearer ${bearer}" ${demo.url}/metrics
  Data     ${dbPath}
`);

let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopping) {
      const closing = demo.engine.stats().closingSessions;
      process.stderr.write(`${signal} again: exiting now, without waiting; ${closing} session(s) had not finished closing and may not be saved.\n`);
      process.exit(1);
    }
    stopping = true;
    const open = demo.engine.stats().sessions;
    const failedBefore = demo.engine.stats().hookErrors + demo.engine.stats().hookTimeouts;
    process.stdout.write(`${signal}: stopping. Closing ${open} session(s); each close hook saves to SQLite before exit (${signal} again to exit at once).\n`);
    demo.close().then(
      () => {
        const failed = demo.engine.stats().hookErrors + demo.engine.stats().hookTimeouts - failedBefore;
        process.stdout.write(failed === 0 ? `Stopped: ${open} session(s) closed and saved.\n` : `Stopped: ${open} session(s) closed; ${failed} close hook(s) failed, their sessions not saved (see the errors above).\n`);
        process.exit(0);
      },
      (error: unknown) => {
        process.stderr.write(`stop failed: ${error instanceof Error ? error.stack : String(error)}\n`);
        process.exit(1);
      },
    );
  });
}
