import { DatabaseUnavailableError, Lookup } from './directory';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('Lookup: the gateway directory cache', () => {
  it('should load a missing entry once however many requests ask at the same moment', async () => {
    let loads = 0;
    const l = new Lookup<string>(10, 60_000, async (k) => {
      loads++;
      await sleep(20);
      return `v-${k}`;
    });
    const got = await Promise.all(Array.from({ length: 100 }, () => l.get('a')));
    expect(new Set(got)).toEqual(new Set(['v-a']));
    expect(loads).toBe(1);
  });

  it('should serve an expired entry while one background read refreshes it', async () => {
    let version = 0;
    let loads = 0;
    const l = new Lookup<number>(10, 30, async () => {
      loads++;
      await sleep(20);
      return ++version;
    });
    expect(await l.get('k')).toBe(1);
    await sleep(50); // past the TTL
    const during = await Promise.all(Array.from({ length: 20 }, () => l.get('k')));
    expect(during.every((v) => v === 1)).toBe(true); // no request waited for the database
    await sleep(40);
    expect(await l.get('k')).toBe(2);
    expect(loads).toBe(2);
  });

  it('should never store a read that was in flight when the entry was invalidated', async () => {
    let version = 0;
    const l = new Lookup<number>(10, 60_000, async () => {
      const v = ++version; // the value as of the moment the read began
      await sleep(20);
      return v;
    });
    const pending = l.get('k');
    await sleep(5);
    l.delete('k'); // a NOTIFY: the row changed after that read began
    expect(await pending).toBe(2);
    expect(await l.get('k')).toBe(2);
  });

  it('should answer with one uncached read when the entry is invalidated during every read (a row that never stops changing)', async () => {
    let version = 0;
    // Every cached read is overtaken by a change (a NOTIFY arrives while it loads).
    const churn = { on: true };
    const l: Lookup<number> = new Lookup<number>(10, 60_000, async (k) => {
      const v = ++version;
      if (churn.on) setTimeout(() => l.delete(k), 1);
      await sleep(10);
      return v;
    });
    const v = await l.get('k');
    expect(v).toBeGreaterThanOrEqual(3);
    // Not stored: the next get reads again.
    churn.on = false;
    expect(await l.get('k')).toBeGreaterThan(v);
  });

  it('should hold at most its size, however many distinct keys are asked for', async () => {
    let loads = 0;
    const l = new Lookup<null>(100, 60_000, async () => {
      loads++;
      return null;
    });
    for (let i = 0; i < 1000; i++) await l.get(`bad-${i}`);
    await l.get('bad-999');
    expect(loads).toBe(1000);
    await l.get('bad-0'); // evicted long ago
    expect(loads).toBe(1001);
  });

  it('should serve an entry past its TTL while reads fail, up to the stale bound, then refuse with DatabaseUnavailableError', async () => {
    let now = 0;
    let down = false;
    const l = new Lookup<string>(
      10,
      1000,
      async (k) => {
        if (down) throw new Error('connect ECONNREFUSED');
        return `v-${k}`;
      },
      undefined,
      { staleServeMs: 5000, now: () => now },
    );
    expect(await l.get('k')).toBe('v-k');
    down = true;
    now = 5900; // past the TTL, within TTL + stale bound
    expect(await l.get('k')).toBe('v-k');
    await sleep(5);
    expect(await l.get('k')).toBe('v-k'); // the failed refresh kept the entry
    now = 6100; // past TTL + stale bound
    await expect(l.get('k')).rejects.toBeInstanceOf(DatabaseUnavailableError);
    down = false;
    expect(await l.get('k')).toBe('v-k'); // back: read again
  });

  it('should refuse an entry never loaded with DatabaseUnavailableError when its read fails, not a generic error', async () => {
    const l = new Lookup<string>(10, 1000, async () => {
      throw new Error('Connection terminated unexpectedly');
    });
    await expect(l.get('never')).rejects.toThrow(DatabaseUnavailableError);
    await expect(l.get('never')).rejects.toThrow(/Postgres could not be read: Connection terminated/);
  });

  it('should bound a read that hangs by readTimeoutMs', async () => {
    const l = new Lookup<string>(10, 1000, () => new Promise<string>(() => {}), undefined, { readTimeoutMs: 50 });
    await expect(l.get('k')).rejects.toThrow(/longer than 50 ms/);
  });
});
