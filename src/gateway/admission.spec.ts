import pino from 'pino';
import { Admission } from './admission';
import type { Directory, KeyInfo } from './directory';
import { LimitStore, MemoryLimitStore } from './limits';

/** A shared store that can be made unreachable, counting what it was asked. */
class FlakyStore implements LimitStore {
  down = false;
  readonly inner = new MemoryLimitStore();
  releases = 0;
  private check() {
    if (this.down) return Promise.reject(new Error("Stream isn't writeable and enableOfflineQueue options is false"));
    return Promise.resolve();
  }
  async takeRate(k: string, l: number, b: number) {
    await this.check();
    return this.inner.takeRate(k, l, b);
  }
  async acquireSlot(ws: string, budget: number) {
    await this.check();
    return this.inner.acquireSlot(ws, budget);
  }
  async releaseSlot(ws: string, id: string) {
    await this.check();
    this.releases++;
    return this.inner.releaseSlot(ws, id);
  }
  async close() {}
}

const key: KeyInfo = {
  id: 'k1',
  workspaceId: 'ws1',
  scope: 'DEPLOYMENT',
  pipelineId: null,
  deploymentId: 'd1',
  issuedAt: 0,
  expiresAt: null,
  revokedAt: null,
  rotatedAt: null,
  replacedByPrefix: null,
  ratePerMinute: null,
  concurrencyBudget: 2,
  spendCapUsd: null,
};

describe('Admission with a shared limit store that goes away', () => {
  const setup = () => {
    const store = new FlakyStore();
    const warnings: string[] = [];
    const log = pino({ level: 'warn' }, { write: (l: string) => warnings.push(JSON.parse(l).msg) });
    let now = 0;
    const degraded: boolean[] = [];
    const a = new Admission(
      {} as Directory,
      store,
      log,
      6,
      (d) => degraded.push(d),
      1000,
      () => now,
    );
    return { store, a, warnings, degraded, tick: (ms: number) => (now += ms) };
  };

  it('should count in-process while the store is down, warn once, and say once that it is back', async () => {
    const { store, a, warnings, degraded, tick } = setup();
    store.down = true;
    for (let i = 0; i < 5; i++) {
      const r = await a.admit(key);
      if ('release' in r) r.release();
      tick(400);
    }
    store.down = false;
    tick(1000);
    const r = await a.admit(key);
    expect('release' in r).toBe(true);
    expect(degraded).toEqual([true, false]);
    expect(warnings.filter((w) => /unreachable/.test(w))).toHaveLength(1);
    expect(warnings.filter((w) => /reachable again/.test(w))).toHaveLength(1);
  });

  it("should give a slot counted in-process back in-process, never off the shared store's count", async () => {
    const { store, a, tick } = setup();
    const shared = await a.admit(key); // held in the shared store
    store.down = true;
    const local = await a.admit(key); // counted here
    store.down = false;
    tick(2000);
    if (!('release' in local) || !('release' in shared)) throw new Error('refused');
    local.release();
    await new Promise((r) => setImmediate(r));
    // The shared store still counts the slot it gave: the budget of 2 has one left there, not two.
    expect(store.releases).toBe(0);
    expect((await store.inner.acquireSlot('ws1', 2)).inUse).toBe(2);
  });
});
