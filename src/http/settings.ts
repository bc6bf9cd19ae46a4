import type { SessionEngine } from '../engine.js';
import { kOptionsVersion, type RuntimeOptions } from '../options.js';
import type { SessionVars } from '../process.js';
import { isSameCookie } from './cookie.js';
import { SessionCookieFormat } from './set-cookie.js';
import { staleCookiesAfter, type StaleCookie } from './stale-cookies.js';

/**
 * What the binding reads of an engine: its options, and the version that says when they changed (every
 * `SessionEngine` has it; without it the options are read on every request).
 */
export type OptionsEngine = Pick<SessionEngine<SessionVars>, 'getOption'> & { readonly [kOptionsVersion]?: number };

/** The options every request reads, as the engine had them at `version`. */
export interface BindingSettings {
  readonly version: number | undefined;
  readonly cookieName: string;
  readonly trustProxy: RuntimeOptions['trustProxy'];
  readonly cookieFormat: SessionCookieFormat;
  /** The longest cookie lifetime used since the cookie's name, domain and path last changed. */
  readonly longestCookieLifetimeMs: number;
  /** When a cookie set under them before they last changed (back to them) expires at the latest, if known. */
  readonly cookieGoneNotBeforeMs: number | undefined;
  /** The cookie as set under earlier names, domains or paths, which a browser may still hold (stale-cookies.ts). */
  readonly staleCookies: readonly StaleCookie[];
}

const settings = new WeakMap<OptionsEngine, BindingSettings>();

/**
 * The engine's options as the binding uses them on every request, read again only when an option has
 * changed since (setOption, or another node of a shared store): a request then costs one lookup and one
 * comparison, not seven validated `getOption` calls.
 */
export function bindingSettings(engine: OptionsEngine): BindingSettings {
  const version = engine[kOptionsVersion];
  let current = settings.get(engine);
  if (current === undefined || current.version !== version || version === undefined) {
    const previous = current;
    const cookieFormat = new SessionCookieFormat({
      cookieName: engine.getOption('cookieName'), cookieDomain: engine.getOption('cookieDomain'), cookiePath: engine.getOption('cookiePath'),
      cookieSameSite: engine.getOption('cookieSameSite'), cookieSecure: engine.getOption('cookieSecure'),
    });
    const cookieLifetimeMs = engine.getOption('inactiveSessionTimeoutMs');
    const staleCookies = previous === undefined
      ? []
      : staleCookiesAfter(previous.staleCookies, previous.cookieFormat.options, previous.longestCookieLifetimeMs, previous.cookieGoneNotBeforeMs, cookieFormat.options);
    const sameCookie = previous !== undefined && isSameCookie(previous.cookieFormat.options, cookieFormat.options);
    // Back to a cookie set earlier: a browser may still hold one set then.
    const earlier = sameCookie
      ? { lifetimeMs: previous.longestCookieLifetimeMs, goneNotBeforeMs: previous.cookieGoneNotBeforeMs }
      : previous?.staleCookies.find((stale) => isSameCookie(stale.options, cookieFormat.options))?.carried;
    current = {
      version,
      cookieName: cookieFormat.options.cookieName,
      trustProxy: engine.getOption('trustProxy'),
      cookieFormat,
      longestCookieLifetimeMs: Math.max(earlier?.lifetimeMs ?? 0, cookieLifetimeMs),
      cookieGoneNotBeforeMs: earlier?.goneNotBeforeMs,
      staleCookies,
    };
    settings.set(engine, current);
  }
  return current;
}
