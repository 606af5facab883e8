import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pino from 'pino';
import { loadConfig } from '../../src/config/config';
import { createPrisma, PrismaClient } from '../../src/database/prisma';
import { dropDatabase, ensureDatabase, migrate } from '../../src/database/migrate';
import { MonitoringService } from '../../src/monitoring/monitoring.service';
import { LoadSampler, SKETCH_RELATIVE_ACCURACY } from '../../src/monitoring/sampler';
import { prng } from '../../src/common/prng';

/**
 * Load samples on a database of their own: two gateway processes sample one deployment, each writes its own rows,
 * and the series read back merges them: request and error counts exact, in flight summed second by second, and
 * latency percentiles within the sketch's relative accuracy of the exact percentiles of every latency recorded.
 */
describe('per-minute load samples in Postgres, merged across gateway processes', () => {
  const url = (() => {
    const u = new URL(process.env.DATABASE_URL!);
    u.pathname = `/${u.pathname.slice(1)}_samples_${Date.now().toString(36)}`;
    return u.toString();
  })();
  let prisma: PrismaClient;
  const log = pino({ level: 'silent' });
  // A fixed clock on a minute boundary: minute 0 starts here.
  const T0 = Date.UTC(2026, 11, 1, 12, 0, 0);
  let now = T0;
  const loads = new Map<string, { inFlight: number; queued: number }>();

  const sampler = (gatewayId: string, load: { inFlight: number; queued: number }) =>
    new LoadSampler({
      prisma,
      gatewayId,
      log,
      flushMs: 1000,
      retentionDays: 7,
      now: () => now,
      sources: { load: (id) => (id === 'dep' ? load : undefined), loaded: () => ['dep'] },
    });

  beforeAll(async () => {
    await ensureDatabase(url);
    await migrate(url, resolve(__dirname, '../../prisma/migrations'));
    prisma = createPrisma(url, 4);
    await prisma.workspace.create({ data: { id: 'ws', name: 'ws', plan: 'TEAM' } });
    await prisma.pipeline.create({ data: { id: 'p', workspaceId: 'ws', name: 'p', task: 'CHAT', model: 'm' } });
    await prisma.variant.create({ data: { id: 'v', pipelineId: 'p', name: 'v', gpu: 'sim', engine: 'sim' } });
    await prisma.deployment.create({
      data: {
        id: 'dep',
        workspaceId: 'ws',
        pipelineId: 'p',
        variantId: 'v',
        target: 'LOCAL',
        gpu: 'sim',
        mode: 'FLEX',
        minReplicas: 0,
        maxReplicas: 4,
        status: 'ACTIVE',
      },
    });
    // The scaler's last applied count, as its actuation activity records it.
    await prisma.deploymentEvent.create({
      data: {
        deploymentId: 'dep',
        kind: 'scale.up',
        message: '2 -> 4: average 40 in flight per replica exceeds target 32',
        data: { replicaIds: ['r3'], from: 2, to: 4 },
      },
    });
    for (const [id, state] of [
      ['r1', 'READY'],
      ['r2', 'READY'],
      ['r3', 'STARTING'],
    ] as const)
      await prisma.replica.create({ data: { id, deploymentId: 'dep', state, gpu: 'sim' } });
  });
  afterAll(async () => {
    await prisma?.$disconnect();
    await dropDatabase(url);
  });

  const service = () => new MonitoringService(prisma, loadConfig({ DATABASE_URL: url, DATA_DIR: tmpdir() }));

  it('should count every request exactly and hold percentiles within the stated error when two processes write', async () => {
    const a = { inFlight: 0, queued: 0 };
    const b = { inFlight: 0, queued: 0 };
    loads.set('a', a).set('b', b);
    const ga = sampler('gw-a', a);
    const gb = sampler('gw-b', b);
    const rnd = prng(7);
    const all: number[] = [];
    const ttfts: number[] = [];
    // Two minutes of traffic, split unevenly: process a gets fast requests, b a slow tail.
    for (let i = 0; i < 3000; i++) {
      now = T0 + Math.floor((i / 3000) * 120_000);
      const fast = i % 3 !== 0;
      const latencyMs = fast ? 20 + rnd() * 80 : 200 + rnd() * 4000;
      const ttftMs = latencyMs / 4;
      all.push(latencyMs);
      ttfts.push(ttftMs);
      (fast ? ga : gb).record({
        deploymentId: 'dep',
        at: now,
        errorCode: i % 100 === 0 ? 'upstream_broken' : i % 250 === 1 ? 'no_replica_available' : null,
        latencyMs,
        ttftMs,
        promptTokens: 10,
        completionTokens: 5,
        costUsd: 0.0001,
      });
    }
    // In flight at second 10 of minute 0: 4 in a, 7 in b (the peak is the sum, 11); at second 11: 2 and 1.
    now = T0 + 10_000;
    Object.assign(a, { inFlight: 4, queued: 1 });
    Object.assign(b, { inFlight: 7, queued: 2 });
    ga.tick();
    gb.tick();
    now = T0 + 11_000;
    Object.assign(a, { inFlight: 2, queued: 0 });
    Object.assign(b, { inFlight: 1, queued: 0 });
    ga.tick();
    gb.tick();
    await ga.flush();
    await gb.flush();
    // A second write of the same rows (a retry, the next interval) changes nothing.
    await ga.flush();

    const m = await service().metrics('dep', { from: new Date(T0), to: new Date(T0 + 180_000), step: 60 });
    expect(m.points.map((p) => p.start.getTime())).toEqual([T0, T0 + 60_000, T0 + 120_000]);
    expect(m.relativeAccuracy).toBe(SKETCH_RELATIVE_ACCURACY);
    expect(m.points.reduce((s, p) => s + p.requests, 0)).toBe(3000);
    expect(m.points[0].requests).toBe(1500);
    expect(m.points[2].requests).toBe(0);
    expect(m.points[2].latencyP50Ms).toBeNull();
    const errors = new Map<string, number>();
    for (const p of m.points) for (const e of p.errorsByCode) errors.set(e.code, (errors.get(e.code) ?? 0) + e.count);
    expect(Object.fromEntries(errors)).toEqual({ upstream_broken: 30, no_replica_available: 12 });
    expect(m.points[0].promptTokens + m.points[1].promptTokens).toBe(30_000);
    expect(m.points[0].inFlightPeak).toBe(11);
    expect(m.points[0].inFlightMean).toBe(7);
    expect(m.points[0].queuedPeak).toBe(3);
    // Replicas by state (two READY, one STARTING in Postgres) and the scaler's desired count (its last scale event's, one
    // replica not yet asked of the provider), in the minute they were read.
    const last = m.points.find((p) => p.replicasReady !== null)!;
    expect([last.replicasReady, last.replicasStarting, last.replicasDraining, last.desired]).toEqual([2, 1, 0, 4]);

    // The whole range in one step: the merged sketch against the exact percentiles of all 3000 latencies.
    const whole = await service().metrics('dep', { from: new Date(T0), to: new Date(T0 + 120_000), step: 120 });
    expect(whole.points).toHaveLength(1);
    const sorted = [...all].sort((x, y) => x - y);
    const sortedTtft = [...ttfts].sort((x, y) => x - y);
    const within = (got: number | null, values: number[], q: number) => {
      // DDSketch's rank is q x (n - 1); the value there is within the relative accuracy.
      const exact = values[Math.floor(q * (values.length - 1))];
      expect(got).not.toBeNull();
      expect(Math.abs(got! - exact) / exact).toBeLessThanOrEqual(SKETCH_RELATIVE_ACCURACY + 1e-9);
    };
    const p = whole.points[0];
    within(p.latencyP50Ms, sorted, 0.5);
    within(p.latencyP95Ms, sorted, 0.95);
    within(p.latencyP99Ms, sorted, 0.99);
    within(p.ttftP50Ms, sortedTtft, 0.5);
    within(p.ttftP99Ms, sortedTtft, 0.99);
    // An average of the two processes' p95s would be far off: process a alone never exceeds 100 ms.
    expect(p.latencyP95Ms!).toBeGreaterThan(1000);
    expect(p.requestsPerSecond).toBeCloseTo(3000 / 120, 6);
  });

  it('should refuse a step that is not a multiple of a minute, a reversed range and too many points, naming the rule', async () => {
    const svc = service();
    const from = new Date(T0);
    await expect(svc.metrics('dep', { from, to: new Date(T0 + 60_000), step: 90 })).rejects.toThrow(/multiple of 60/);
    await expect(svc.metrics('dep', { from, to: new Date(T0 - 60_000), step: 60 })).rejects.toThrow(/to must be after from/);
    await expect(svc.metrics('dep', { from, to: new Date(T0 + 86_400_000 * 2), step: 60 })).rejects.toThrow(/at most 1440 points/);
  });

  it('should delete samples older than the retention', async () => {
    const old = sampler('gw-old', { inFlight: 0, queued: 0 });
    now = T0 - 10 * 86_400_000;
    old.record({
      deploymentId: 'dep',
      at: now,
      errorCode: null,
      latencyMs: 5,
      ttftMs: 1,
      promptTokens: 0,
      completionTokens: 0,
      costUsd: 0,
    });
    await old.flush();
    expect(await prisma.loadSample.count({ where: { gatewayId: 'gw-old' } })).toBe(1);
    now = T0;
    const sweeper = sampler('gw-sweep', { inFlight: 0, queued: 0 });
    await sweeper.flush();
    expect(await prisma.loadSample.count({ where: { gatewayId: 'gw-old' } })).toBe(0);
    expect(await prisma.loadSample.count({ where: { gatewayId: 'gw-a' } })).toBeGreaterThan(0);
  });

  it("should read a local replica's last log lines and say why when a target keeps none", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'infercp-logs-'));
    mkdirSync(join(dataDir, 'local', 'logs'), { recursive: true });
    const lines = Array.from({ length: 500 }, (_, i) => JSON.stringify({ msg: `line ${i}` }));
    writeFileSync(join(dataDir, 'local', 'logs', 'r1.log'), `${lines.join('\n')}\n`);
    const svc = new MonitoringService(prisma, loadConfig({ DATABASE_URL: url, DATA_DIR: dataDir }));
    const got = await svc.logs({ id: 'r1', deploymentId: 'dep', providerId: '1' }, 3);
    expect(got).toEqual({ replicaId: 'r1', available: true, reason: null, lines: lines.slice(-3) });
    const none = await svc.logs({ id: 'r2', deploymentId: 'dep', providerId: '2' }, 3);
    expect(none.available).toBe(false);
    expect(none.reason).toMatch(/no log yet/);
    await expect(svc.logs({ id: 'r1', deploymentId: 'dep', providerId: '1' }, 0)).rejects.toThrow(/tail must be at least 1/);
  });
});
