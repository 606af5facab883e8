import { AsyncResource } from 'node:async_hooks';

/**
 * Works around a garbage-collection trap on the gateway's hot path.
 *
 * Node's `AsyncResource.prototype.bind` (20.x and 22.x at least) gives every
 * bound function a deprecated `asyncResource` *accessor*: a fresh getter and
 * setter per call, made by `util.deprecate` (which on Node 20 also re-parents
 * them with `Object.setPrototypeOf`). Objects reached from such per-call
 * accessors outlive V8's young-generation collections. Fastify binds one
 * callback per request body, so each request's whole object graph (request,
 * reply, headers, upstream handler) was copied and then promoted to the old
 * generation. Measured with `--trace-gc-nvp`: a bare Fastify POST route at
 * 1,000 req/s kept 30 % of its allocations through each young collection, with
 * 8-10 ms pauses; with this patch 0.3 % and 0.7 ms. The gateway's own young
 * collections went from 22 % survival and 5-20 ms pauses to 3 % and about 4 ms
 * (p50), and its added p99 with them (bench/gateway). /v1 is now served ahead
 * of Fastify (Gateway.handle), but GraphQL requests still take this path. The
 * same trap is why raw-body stopped using the static bind.
 *
 * The replacement keeps the documented behaviour: the bound function runs in the
 * resource's async scope with `this` (or `thisArg`), keeps `fn.length`, and has
 * an `asyncResource` property, as a plain value (no deprecation warning). It is
 * installed only where the running Node still defines that accessor.
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
        throw Object.assign(new TypeError(`The "fn" argument must be of type function. Received ${fn === null ? 'null' : typeof fn}`), { code: 'ERR_INVALID_ARG_TYPE' });
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
