import type { SessionVars } from '../process.js';

/**
 * Augment this interface once to type `proc.vars` wherever a framework adapter hands the process out
 * (Express `req.proc`, Fastify `request.proc`, Hono `c.get('proc')`). Like express-session's
 * `SessionData`, it is one declaration for the whole program.
 *
 * @example
 * declare module 'legacy-web-sessions' {
 *   interface SessionTypes {
 *     vars: { user?: string; cart: string[] };
 *   }
 * }
 */
// Empty on purpose: an interface for applications to augment.
export interface SessionTypes {}

/** The `vars` type registered in {@link SessionTypes}, else `Record<string, unknown>`. */
export type RequestVars = SessionTypes extends { vars: infer V extends SessionVars } ? V : Record<string, unknown>;
