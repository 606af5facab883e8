import { AsyncResource } from 'node:async_hooks';

/**
 * Node's AsyncResource.prototype.bind minus the per-call deprecated `asyncResource` accessor that kept every Fastify
 * request's objects past young collections (bench/README.md, "Why the request path looks the way it does"), with the
 * documented behaviour kept. Installed only where the running Node still defines that accessor.
 *
 * @returns whether the patch was installed by this call
 */
export function installLeanAsyncResourceBind(): boolean {
  if (!bindDefinesAccessor()) return false;
  Object.defineProperty(AsyncResource.prototype, 'bind', {
    configurable: true,
    writable: true,
    enumerable: false,
    value: function bind(this: AsyncResource, fn: (...args: unknown[]) => unknown, thisArg?: unknown) {
      if (typeof fn !== 'function') {
        throw Object.assign(new TypeError(`The "fn" argument must be of type function. Received ${fn === null ? 'null' : typeof fn}`), {
          code: 'ERR_INVALID_ARG_TYPE',
        });
      }
      // The wrapper's own `this` is the caller's, so the resource is captured by name.
      // eslint-disable-next-line @typescript-eslint/no-this-alias
      const resource = this;
      const bound =
        thisArg === undefined
          ? function (this: unknown, ...args: unknown[]) {
              return resource.runInAsyncScope(fn, this, ...args);
            }
          : (...args: unknown[]) => resource.runInAsyncScope(fn, thisArg, ...args);
      Object.defineProperties(bound, {
        length: { configurable: true, enumerable: false, writable: false, value: fn.length },
        asyncResource: { configurable: true, enumerable: true, writable: true, value: resource },
      });
      return bound;
    },
  });
  return true;
}

/** True where `bind` still gives each bound function its own `asyncResource` accessor (the trap above). */
export function bindDefinesAccessor(): boolean {
  const bound = new AsyncResource('infercp-probe').bind(() => undefined);
  const getter = Object.getOwnPropertyDescriptor(bound, 'asyncResource')?.get;
  return getter !== undefined;
}
