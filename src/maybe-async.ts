/**
 * A value now, or a promise of it later. The hot paths return the value itself when they can decide at
 * once (a free process, a synchronous init or hook): on Node 20 every promise also pays for the async
 * hooks behind AsyncLocalStorage, so a promise that is not needed is not made.
 */
export type MaybePromise<T> = T | Promise<T>;

/** Whether `value` is a promise (or any thenable, as `await` would treat it). */
export function isThenable<T>(value: T | PromiseLike<T>): value is PromiseLike<T> {
  return typeof (value as PromiseLike<T> | null | undefined)?.then === 'function';
}

/** What an application callback returned, as a MaybePromise: a foreign thenable becomes a real promise. */
export function settledOrPromise<T>(value: T | PromiseLike<T>): MaybePromise<T> {
  return isThenable(value) ? Promise.resolve(value) : value;
}
