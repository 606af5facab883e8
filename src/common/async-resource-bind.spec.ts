import { AsyncLocalStorage, AsyncResource, executionAsyncId } from 'node:async_hooks';
import { bindDefinesAccessor, installLeanAsyncResourceBind } from './async-resource-bind';

describe('lean AsyncResource.bind', () => {
  beforeAll(() => {
    installLeanAsyncResourceBind();
  });

  it('is in place, and installing it again changes nothing', () => {
    expect(bindDefinesAccessor()).toBe(false);
    const bind = AsyncResource.prototype.bind;
    expect(installLeanAsyncResourceBind()).toBe(false);
    expect(AsyncResource.prototype.bind).toBe(bind);
  });

  it('runs the callback in the resource scope, with its async context, this and arguments', () => {
    const als = new AsyncLocalStorage<{ request: string }>();
    let resourceId = -1;
    const bound = als.run({ request: 'r1' }, () => {
      const resource = new AsyncResource('test');
      resourceId = resource.asyncId();
      return resource.bind(function (this: unknown, a: number, b: number) {
        return { store: als.getStore(), self: this, sum: a + b, id: executionAsyncId() };
      });
    });
    const self = { name: 'caller' };
    expect(als.getStore()).toBeUndefined();
    expect(bound.call(self, 2, 3)).toEqual({ store: { request: 'r1' }, self, sum: 5, id: resourceId });
    expect(bound.length).toBe(2);
    expect((bound as unknown as { asyncResource: AsyncResource }).asyncResource.asyncId()).toBe(resourceId);
  });

  it('binds thisArg when given, and the static form still works', () => {
    const target = { n: 7 };
    // Node documents bind(fn, thisArg); @types/node declares only bind(fn).
    const resource = new AsyncResource('test') as AsyncResource & {
      bind<F extends (...args: never[]) => unknown>(fn: F, thisArg: unknown): F;
    };
    const bound = resource.bind(function (this: { n: number }) {
      return this.n;
    }, target);
    expect(bound.call({ n: 1 })).toBe(7);
    expect(AsyncResource.bind((x: number) => x * 2)(21)).toBe(42);
  });

  it('refuses a non-function like the built-in does', () => {
    const resource = new AsyncResource('test');
    expect(() => resource.bind(42 as unknown as () => void)).toThrow(
      expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' }),
    );
  });
});
