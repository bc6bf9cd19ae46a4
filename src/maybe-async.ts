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

/**
 * Continues with `value` at once when it is not a promise, else when it settles: the synchronous path
 * makes no promise. `onError` answers a rejection (a synchronous throw is the caller's to catch).
 */
export function whenReady<T, R>(value: MaybePromise<T>, onValue: (value: T) => R, onError: (error: unknown) => R): MaybePromise<R> {
  return isThenable(value) ? Promise.resolve(value).then(onValue, onError) : onValue(value);
}
