import pino from 'pino';
import type { LoadReport } from '../domain/scaling';
import { DeploymentLoad, EJECT_MS, Waiter } from './load';
import { LoadReporter, NoScalerError } from './reporter';

const replicas = [
  { id: 'a', address: 'http://a', concurrency: 2 },
  { id: 'b', address: 'http://b', concurrency: 3 },
];

function waiter(load: DeploymentLoad, at: number, cold = false) {
  const got: Array<string | null> = [];
  const w: Waiter = { enqueuedAt: at, cold, resolve: (r) => got.push(r?.id ?? null) };
  load.enqueue(w);
  return { w, got };
}

describe('DeploymentLoad: in-flight accounting and the FIFO queue', () => {
  it('should route to the replica with the most headroom and never past its concurrency', () => {
    const l = new DeploymentLoad('d');
    const picks = Array.from({ length: 6 }, () => l.acquire(replicas, 0)?.id ?? null);
    expect(picks).toEqual(['b', 'a', 'b', 'a', 'b', null]);
    expect(l.inFlight).toBe(5);
    for (const id of ['a', 'a', 'b', 'b', 'b']) l.release(id, 0, true);
    expect(l.inFlight).toBe(0);
    expect(l.inFlightByReplica.size).toBe(0);
  });

  it('should hand freed slots to waiters oldest first, reserving them', () => {
    const l = new DeploymentLoad('d');
    while (l.acquire(replicas, 0)) {
      /* fill */
    }
    const first = waiter(l, 100);
    const second = waiter(l, 200);
    expect(l.oldestQueuedMs(1100)).toBe(1000);
    l.release('a', 1000, true);
    expect(l.dispatch(replicas, 1000)).toBe(1);
    expect(first.got).toEqual(['a']);
    expect(second.got).toEqual([]);
    expect(l.inFlight).toBe(5);
    expect(l.remove(second.w)).toBe(true);
    expect(l.remove(second.w)).toBe(false);
  });

  it('should route around a replica that failed until its ejection ends, and never eject every replica', () => {
    const l = new DeploymentLoad('d');
    l.eject('b', 1000);
    const during = Array.from({ length: 3 }, () => l.acquire(replicas, 1000 + EJECT_MS - 1)?.id ?? null);
    expect(during).toEqual(['a', 'a', null]);
    l.release('a', 0, true);
    l.release('a', 0, true);
    expect(l.acquire(replicas, 1000 + EJECT_MS)?.id).toBe('b');
    // Both failed: guessing both are down would take the deployment out; both stay eligible.
    l.eject('a', 2000);
    l.eject('b', 2000);
    expect(l.acquire(replicas, 2500)).not.toBeNull();
  });

  it('should learn decode time per token from completions long enough to say', () => {
    const l = new DeploymentLoad('d');
    l.observeDecode(4, 400);
    expect(l.msPerToken).toBeNull();
    l.observeDecode(100, 1000);
    expect(l.msPerToken).toBe(10);
    l.observeDecode(100, 2000);
    expect(l.msPerToken).toBeCloseTo(12);
  });

  it('should measure a cold start when a waiter that found no replica is served', () => {
    const l = new DeploymentLoad('d');
    waiter(l, 1000, true);
    expect(l.retryAfterSeconds(1000, 0)).toBe(1);
    l.dispatch(replicas, 5200);
    expect(l.coldStartMs).toBe(4200);
    expect(l.retryAfterSeconds(6000, 0)).toBe(5);
  });

  it('should compute Retry-After from the measured drain rate and the queue ahead', () => {
    const l = new DeploymentLoad('d');
    // 20 completions over the last 10 s: 2 per second.
    for (let i = 0; i < 20; i++) {
      l.acquire(replicas, 0);
      l.release(l.inFlightByReplica.keys().next().value as string, 10_000 + i * 450, true);
    }
    expect(l.drainRate(19_999)).toBe(2);
    for (let i = 0; i < 7; i++) waiter(l, 19_000);
    expect(l.retryAfterSeconds(19_999, 2)).toBe(4); // (7 + 1) / 2
    expect(l.retryAfterSeconds(60_000, 2)).toBe(1); // nothing measured lately
  });
});

describe('LoadReporter: coalesced reports with a heartbeat', () => {
  function setup(serving: string[] = []) {
    const loads = new Map<string, DeploymentLoad>();
    const sent: Array<[string, LoadReport]> = [];
    let fail: Error | null = null;
    const r = new LoadReporter({
      gatewayId: 'gw',
      intervalMs: 1000,
      heartbeatMs: 2000,
      log: pino({ level: 'silent' }),
      load: (id) => loads.get(id),
      loaded: () => [...loads.keys()].filter((k) => !loads.get(k)!.idle()),
      serving: async () => serving,
      sink: async (id, rep) => {
        if (fail) throw fail;
        sent.push([id, rep]);
      },
    });
    const load = (id: string) => {
      if (!loads.has(id)) loads.set(id, new DeploymentLoad(id));
      return loads.get(id)!;
    };
    const tick = async (now: number) => Promise.all(await r.tick(now));
    return { r, sent, load, tick, failWith: (e: Error | null) => (fail = e) };
  }

  it('should send on change at most once per interval, and a heartbeat when unchanged', async () => {
    const { sent, load, tick } = setup();
    const l = load('d1');
    l.acquire(replicas, 0);
    await tick(0);
    l.acquire(replicas, 0);
    await tick(500); // changed, but within the interval
    await tick(1000); // the change goes out
    await tick(2000); // unchanged, before the heartbeat
    await tick(3000); // heartbeat
    expect(sent.map(([, rep]) => [rep.at, rep.inFlight])).toEqual([
      [0, 1],
      [1000, 2],
      [3000, 2],
    ]);
  });

  it('should send a rise of one replica target at once, within the interval, and smaller changes at its end', async () => {
    const { sent, load, tick } = setup();
    const l = load('d1');
    l.targetConcurrency = 2;
    const many = [...replicas, { id: 'c', address: 'http://c', concurrency: 10 }];
    l.acquire(many, 0);
    await tick(0);
    l.acquire(many, 0);
    await tick(150); // +1: below one target, waits for the interval
    l.acquire(many, 0);
    await tick(200); // +2 since the last report: at once
    await tick(250); // unchanged
    l.acquire(many, 0);
    await tick(300); // +1 again: the interval holds it
    await tick(1200); // the interval after the urgent report
    expect(sent.map(([, rep]) => [rep.at, rep.inFlight])).toEqual([
      [0, 1],
      [200, 3],
      [1200, 4],
    ]);
  });

  it('should heartbeat zero for serving deployments with no local traffic, and forget the rest', async () => {
    const { sent, tick } = setup(['idle']);
    await tick(0);
    await tick(1000);
    await tick(2000);
    expect(sent.map(([id, rep]) => [id, rep.at, rep.inFlight, rep.queued])).toEqual([
      ['idle', 0, 0, 0],
      ['idle', 2000, 0, 0],
    ]);
  });

  it('should report a queue at once when poked (cold start), then its age as it grows', async () => {
    const { r, sent, load, tick } = setup();
    const l = load('cold');
    waiter(l, 10_000, true);
    r.poke('cold', 10_000);
    await Promise.resolve();
    await tick(10_500);
    await tick(11_000);
    expect(sent.map(([, rep]) => [rep.at, rep.queued, rep.oldestQueuedMs])).toEqual([
      [10_000, 1, 0],
      [11_000, 1, 1000],
    ]);
  });

  it('should send a wake from zero at once even just after a heartbeat of zero (a cold start is not held for the interval)', async () => {
    const { r, sent, load, tick } = setup(['cold']);
    await tick(0); // the heartbeat of zero of a serving deployment
    const l = load('cold');
    waiter(l, 300, true);
    r.poke('cold', 300);
    await Promise.resolve();
    expect(sent.map(([, rep]) => [rep.at, rep.queued])).toEqual([
      [0, 0],
      [300, 1],
    ]);
  });

  it('should stop reporting for a while to a deployment without a scaler', async () => {
    const { sent, tick, failWith } = setup(['gone']);
    failWith(new NoScalerError('no scaler'));
    await tick(0);
    failWith(null);
    await tick(5000);
    expect(sent).toEqual([]);
    await tick(31_000);
    expect(sent.length).toBe(1);
  });
});
