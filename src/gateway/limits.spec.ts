import fc from 'fast-check';
import { Redis } from 'ioredis';
import { gcra, MemoryLimitStore, RedisLimitStore } from './limits';

describe('gcra: a leaky bucket with a burst', () => {
  it('should pass a burst at once, then one request per interval', () => {
    let tat: number | null = null;
    const out: Array<[boolean, number]> = [];
    for (let i = 0; i < 4; i++) {
      const d = gcra(tat, 0, 60, 3); // 1 per second, burst 3
      if (d.allowed) tat = d.tat;
      out.push([d.allowed, d.allowed ? d.remaining : d.retryAfterMs]);
    }
    expect(out).toEqual([
      [true, 2],
      [true, 1],
      [true, 0],
      [false, 1000],
    ]);
    expect(gcra(tat, 1000, 60, 3)).toMatchObject({ allowed: true, remaining: 0 });
  });

  it('should never let more than burst + t * rate pass in any interval of t', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 10_000 }),
        fc.integer({ min: 1, max: 50 }),
        fc.array(fc.integer({ min: 0, max: 500 }), { minLength: 1, maxLength: 300 }),
        (limit, burst, gaps) => {
          let tat: number | null = null;
          let now = 0;
          const passed: number[] = [];
          for (const g of gaps) {
            now += g;
            const d = gcra(tat, now, limit, burst);
            if (d.allowed) {
              tat = d.tat;
              passed.push(now);
            }
          }
          for (let i = 0; i < passed.length; i++) {
            for (let j = i; j < passed.length; j++) {
              expect(j - i + 1).toBeLessThanOrEqual(burst + ((passed[j] - passed[i]) * limit) / 60_000 + 1e-9);
            }
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('limit stores', () => {
  const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { lazyConnect: true, maxRetriesPerRequest: 1 });
  const prefix = `infercp-test-${process.pid}-${Date.now()}:`;
  let stores: Array<[string, MemoryLimitStore | RedisLimitStore]>;
  beforeAll(async () => {
    await redis.connect();
    stores = [
      ['memory', new MemoryLimitStore()],
      ['redis', new RedisLimitStore(redis.duplicate(), 'gw-a', prefix)],
    ];
  });
  afterAll(async () => {
    for (const [, s] of stores) await s.close();
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });

  it.each(['memory', 'redis'])('%s: should refuse the request past the burst with a retry time', async (name) => {
    const store = stores.find(([n]) => n === name)![1];
    const got = [];
    for (let i = 0; i < 4; i++) got.push(await store.takeRate(`k-${name}`, 60, 3));
    expect(got.map((d) => d.allowed)).toEqual([true, true, true, false]);
    expect(got[0].remaining).toBe(2);
    expect(got[3].retryAfterMs).toBeGreaterThan(900);
    expect(got[3].retryAfterMs).toBeLessThanOrEqual(1000);
  });

  it.each(['memory', 'redis'])('%s: should hold a workspace to its budget and free slots on release', async (name) => {
    const store = stores.find(([n]) => n === name)![1];
    const a = await Promise.all([1, 2, 3].map(() => store.acquireSlot(`ws-${name}`, 2)));
    expect(a.filter((x) => x.ok).length).toBe(2);
    await store.releaseSlot(`ws-${name}`, a.find((x) => x.ok)!.id!);
    expect((await store.acquireSlot(`ws-${name}`, 2)).ok).toBe(true);
  });

  it.each(['memory', 'redis'])(
    "%s: should free one slot when a release is given twice (its reply was lost, so it was sent again), never another request's",
    async (name) => {
      const store = stores.find(([n]) => n === name)![1];
      const ws = `ws-twice-${name}`;
      const first = await store.acquireSlot(ws, 2);
      const second = await store.acquireSlot(ws, 2);
      expect([first.ok, second.ok]).toEqual([true, true]);
      await store.releaseSlot(ws, first.id!);
      await store.releaseSlot(ws, first.id!);
      // The second request still runs: one slot is free, not two.
      expect((await store.acquireSlot(ws, 2)).ok).toBe(true);
      expect(await store.acquireSlot(ws, 2)).toEqual({ ok: false, inUse: 2 });
    },
  );

  it("redis: should share one budget between gateways, let a dead gateway's slots lapse within a lease, and keep a live one's long requests counted", async () => {
    const b = new RedisLimitStore(redis.duplicate(), 'gw-b', prefix, 300);
    const c = new RedisLimitStore(redis.duplicate(), 'gw-c', prefix, 300);
    expect((await c.acquireSlot('ws-shared', 3)).ok).toBe(true);
    expect((await b.acquireSlot('ws-shared', 3)).ok).toBe(true);
    expect((await c.acquireSlot('ws-shared', 3)).ok).toBe(true);
    expect(await c.acquireSlot('ws-shared', 3)).toEqual({ ok: false, inUse: 3 });
    // gw-b loses Redis without a word (a crash): its slot lapses once its lease ends. gw-c's two slots, held for
    // several leases, stay counted: it renews them.
    (b as unknown as { redis: Redis }).redis.disconnect();
    await new Promise((r) => setTimeout(r, 1000));
    expect(await c.acquireSlot('ws-shared', 3)).toMatchObject({ ok: true, inUse: 3 });
    expect(await c.acquireSlot('ws-shared', 3)).toEqual({ ok: false, inUse: 3 });
    await b.close();
    await c.close();
  });

  it('redis: should give back what a gateway still holds when it closes', async () => {
    const a = new RedisLimitStore(redis.duplicate(), 'gw-e', prefix);
    const b = new RedisLimitStore(redis.duplicate(), 'gw-f', prefix);
    expect((await a.acquireSlot('ws-close', 1)).ok).toBe(true);
    expect((await b.acquireSlot('ws-close', 1)).ok).toBe(false);
    await a.close();
    expect((await b.acquireSlot('ws-close', 1)).ok).toBe(true);
    await b.close();
  });
});
