import { resolve } from 'node:path';
import pino from 'pino';
import { createPrisma, PrismaClient } from '../../src/database/prisma';
import { dropDatabase, ensureDatabase, migrate } from '../../src/database/migrate';
import { CapacityAccountant } from '../../src/usage/capacity';
import { UsageRecorder, UsageSample } from '../../src/usage/recorder';
import { DEFAULT_PRICES } from '../../src/domain/pricing';

/**
 * The usage rollups on a database of their own: several gateways adding into
 * the same rows, a write that fails and is retried without losing a request,
 * and warm replica time accounted per minute.
 */
describe('usage rollups in Postgres', () => {
  const url = (() => {
    const u = new URL(process.env.DATABASE_URL!);
    u.pathname = `/${u.pathname.slice(1)}_usage_${Date.now().toString(36)}`;
    return u.toString();
  })();
  let prisma: PrismaClient;
  const log = pino({ level: 'silent' });

  beforeAll(async () => {
    await ensureDatabase(url);
    await migrate(url, resolve(__dirname, '../../prisma/migrations'));
    prisma = createPrisma(url, 4);
    await prisma.workspace.create({ data: { id: 'ws', name: 'ws', plan: 'TEAM' } });
    await prisma.pipeline.create({ data: { id: 'p', workspaceId: 'ws', name: 'p', task: 'CHAT', model: 'm' } });
    await prisma.variant.create({ data: { id: 'v', pipelineId: 'p', name: 'v', gpu: 'H100-80GB', engine: 'sim' } });
    for (const [id, mode] of [
      ['flex', 'FLEX'],
      ['active', 'ACTIVE'],
    ] as const) {
      await prisma.deployment.create({
        data: {
          id,
          workspaceId: 'ws',
          pipelineId: 'p',
          variantId: 'v',
          target: 'RUNPOD',
          gpu: 'H100-80GB',
          mode,
          minReplicas: 0,
          maxReplicas: 2,
          status: 'ACTIVE',
        },
      });
    }
    await prisma.apiKey.create({ data: { id: 'k', workspaceId: 'ws', scope: 'WORKSPACE', name: 'k', prefix: 'pfx', hash: 'h' } });
  });
  afterAll(async () => {
    await prisma?.$disconnect();
    await dropDatabase(url);
  });

  const sample = (at: number, over: Partial<UsageSample> = {}): UsageSample => ({
    deploymentId: 'flex',
    apiKeyId: 'k',
    at,
    ok: true,
    promptTokens: 10,
    completionTokens: 5,
    latencyMs: 100,
    ttftMs: 20,
    costUsd: 0.000006,
    ...over,
  });

  it('should sum every request of several gateway processes into one row per deployment, key and minute', async () => {
    const minute = Date.UTC(2026, 10, 1, 12, 0);
    const gateways = [0, 1, 2].map(() => new UsageRecorder(prisma, 60_000, log));
    for (let i = 0; i < 300; i++)
      gateways[i % 3].record(
        sample(minute + Math.floor(i / 150) * 60_000 + (i % 60) * 1000, { ok: i % 10 !== 0, ttftMs: i % 2 ? 20 : null }),
      );
    await Promise.all(gateways.map((g) => g.flush()));
    await Promise.all(gateways.map((g) => g.flush()));
    const rows = await prisma.usageRollup.findMany({
      where: { deploymentId: 'flex', minute: { gte: new Date(minute), lt: new Date(minute + 120_000) } },
      orderBy: { minute: 'asc' },
    });
    expect(
      rows.map((r) => [r.minute.getTime(), r.requests, r.errors, Number(r.promptTokens), Number(r.completionTokens), r.ttftCount]),
    ).toEqual([
      [minute, 150, 15, 1500, 750, 75],
      [minute + 60_000, 150, 15, 1500, 750, 75],
    ]);
    expect(Number(rows[0].costUsd) + Number(rows[1].costUsd)).toBeCloseTo(300 * 0.000006, 10);
  });

  it('should keep the rows of a failed write and land them with the next one, none lost or counted twice', async () => {
    const minute = Date.UTC(2026, 10, 1, 13, 0);
    const failures: boolean[] = [];
    const g = new UsageRecorder(prisma, 60_000, log, (_n, ok) => failures.push(ok));
    g.record(sample(minute));
    await prisma.$executeRawUnsafe('ALTER TABLE "UsageRollup" RENAME TO "UsageRollupAway"');
    try {
      await g.flush();
      g.record(sample(minute)); // arrives while the rows are pending again
    } finally {
      await prisma.$executeRawUnsafe('ALTER TABLE "UsageRollupAway" RENAME TO "UsageRollup"');
    }
    await g.close();
    expect(failures).toEqual([false, true]);
    const row = await prisma.usageRollup.findFirstOrThrow({ where: { deploymentId: 'flex', minute: new Date(minute) } });
    expect([row.requests, Number(row.promptTokens)]).toEqual([2, 20]);
  });

  it('should not write a batch twice when its commit landed but the answer was lost (the connection broke)', async () => {
    const minute = Date.UTC(2026, 10, 1, 13, 30);
    // The transaction commits, then the client sees the connection break, as when Postgres is cut at that instant.
    let lose = true;
    const lossy = new Proxy(prisma, {
      get(target, p) {
        const v = Reflect.get(target, p) as unknown;
        if (p === '$transaction' && lose)
          return async (...args: unknown[]) => {
            await (target.$transaction as (...a: unknown[]) => Promise<unknown>).apply(target, args);
            throw new Error('Connection terminated unexpectedly');
          };
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const results: boolean[] = [];
    const g = new UsageRecorder(lossy, 60_000, log, (_n, ok) => results.push(ok));
    g.record(sample(minute));
    await g.flush();
    lose = false;
    g.record(sample(minute)); // recorded after: written once, with the next flush
    await g.close();
    expect(results).toEqual([false, true, true]);
    const row = await prisma.usageRollup.findFirstOrThrow({ where: { deploymentId: 'flex', minute: new Date(minute) } });
    expect(row.requests).toBe(2);
    expect(g.pendingRows).toBe(0);
  });

  it('should hold rows while writes fail, drop the oldest past its bound and count them', async () => {
    const minute = Date.UTC(2026, 10, 1, 13, 40);
    const dropped: number[] = [];
    const broken = new Proxy(prisma, {
      get(target, p) {
        if (p === '$transaction') return async () => Promise.reject(new Error('connect ECONNREFUSED'));
        const v = Reflect.get(target, p) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const g = new UsageRecorder(broken, 60_000, log, { onDropped: (n) => dropped.push(n) }, 3);
    for (let i = 0; i < 5; i++) g.record(sample(minute + i * 60_000));
    await g.flush();
    expect(g.pendingRows).toBe(3);
    expect([g.dropped, dropped.length]).toEqual([2, 2]);
  });

  it('should account warm replica seconds per minute, price them for Active only, and change nothing when run again', async () => {
    const t0 = Date.UTC(2026, 10, 1, 14, 0, 30);
    await prisma.replica.createMany({
      data: [
        // Ready 14:00:30, stopped 14:02:00: 30 s then 60 s.
        { id: 'r1', deploymentId: 'active', state: 'STOPPED', gpu: 'H100-80GB', readyAt: new Date(t0), stoppedAt: new Date(t0 + 90_000) },
        { id: 'r2', deploymentId: 'flex', state: 'STOPPED', gpu: 'H100-80GB', readyAt: new Date(t0), stoppedAt: new Date(t0 + 90_000) },
        // Never ready: no warm time.
        { id: 'r3', deploymentId: 'active', state: 'FAILED', gpu: 'H100-80GB', readyAt: null, stoppedAt: new Date(t0 + 10_000) },
      ],
    });
    const acct = new CapacityAccountant(prisma, DEFAULT_PRICES, 60_000, log);
    const now = t0 + 5 * 60_000;
    await acct.account(now);
    await acct.account(now);
    const rows = await prisma.capacityRollup.findMany({ orderBy: [{ deploymentId: 'asc' }, { minute: 'asc' }] });
    const rate = DEFAULT_PRICES.gpus['H100-80GB'].activePerReplicaSecondUsd;
    expect(rows.map((r) => [r.deploymentId, r.minute.toISOString().slice(11, 16), r.replicaSeconds, Number(r.costUsd)])).toEqual([
      ['active', '14:00', 30, Number((30 * rate).toFixed(10))],
      ['active', '14:01', 60, Number((60 * rate).toFixed(10))],
      ['flex', '14:00', 30, 0],
      ['flex', '14:01', 60, 0],
    ]);
  });
});
