import type { ServerResponse } from 'node:http';

// Seeing the application end a response after its client left: from then on its end() (or destroy())
// is the only sign that the handler's work is done with the process (release.ts waits for it).

export type End = (this: ServerResponse, ...args: unknown[]) => ServerResponse;

/** Who waits for the application's next end() or destroy() of a response (set by `onAppEnd`). */
const kOnAppEnd = Symbol('legacy-web-sessions.on-app-end');
type WatchedResponse = ServerResponse & { [kOnAppEnd]?: (() => void) | undefined };

/** Takes the response's waiter, once: whichever of its hooks sees the call first tells it. */
function takeWaiter(res: WatchedResponse): (() => void) | undefined {
  const then = res[kOnAppEnd];
  if (then !== undefined) res[kOnAppEnd] = undefined;
  return then;
}

/** The end() and destroy() `appEndSeenOn` put on prototypes. */
const seeingAppEnd = new WeakSet<object>();

/**
 * Makes `end()` and `destroy()` of every response of `proto`, a prototype the adapter owns (Express's
 * `app.response`, node:http's ServerResponse subclass), tell `onAppEnd`'s waiter, whatever reference
 * the application calls them through: `res.end(await work())` reads `res.end` before the await, a
 * callback may hold `res.end.bind(res)`, both taken before the client left. A response nobody waits for
 * (every one whose client stays) costs a property read per call, and the lookup of the method it wraps.
 */
export function appEndSeenOn(proto: ServerResponse): void {
  // Hooked already, or inherits a hooked prototype (an Express sub-app mounted in an app that has it).
  if (seeingAppEnd.has(proto.end)) return;
  for (const name of ['end', 'destroy'] as const) {
    // A method the prototype has of its own is the one wrapped; an inherited one is looked up at each
    // call, as it was before the hook: one patched later on a prototype above (an APM agent's on
    // http.ServerResponse.prototype, a parent app's once a sub-app is mounted) is still the one called.
    const own = Object.hasOwn(proto, name) ? proto[name] as unknown as End : undefined;
    const seeing = function (this: WatchedResponse): ServerResponse {
      const original = own ?? (Object.getPrototypeOf(proto) as Record<typeof name, End>)[name];
      // `arguments`, not a rest parameter: passed on as given, without an array per call.
      if (this[kOnAppEnd] === undefined) return original.apply(this, arguments as unknown as unknown[]);
      const then = takeWaiter(this);
      try {
        return original.apply(this, arguments as unknown as unknown[]);
      } finally {
        then?.();
      }
    };
    seeingAppEnd.add(seeing);
    Object.defineProperty(proto, name, { value: seeing, writable: true, configurable: true });
  }
}

/**
 * Calls `then` right after the application's next `res.end()` or `res.destroy()` call (once): after
 * its client left, either says the application is done with the response. Seen through the response's
 * prototype where the adapter hooked it (`appEndSeenOn`), and through the response's own `end`/`destroy`
 * as read now (where no prototype is the adapter's, and for overrides a middleware put on the instance,
 * which may call the prototype's end much later, or never once the client is gone).
 */
export function onAppEnd(res: ServerResponse, then: () => void): void {
  const watched = res as WatchedResponse;
  watched[kOnAppEnd] = then;
  const end = res.end as unknown as End;
  const destroy = res.destroy as unknown as End;
  const watch = (original: End): End => function (this: ServerResponse, ...args) {
    res.end = end as unknown as ServerResponse['end'];
    res.destroy = destroy as unknown as ServerResponse['destroy'];
    const waiter = takeWaiter(watched);
    try {
      return original.apply(this, args);
    } finally {
      waiter?.();
    }
  };
  res.end = watch(end) as unknown as ServerResponse['end'];
  res.destroy = watch(destroy) as unknown as ServerResponse['destroy'];
}
