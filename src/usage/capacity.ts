import type { Logger } from 'pino';
import { sqlTimestamp, type PrismaClient } from '../database/prisma';
import { BillingMode, BillingTarget, capacityCostUsd, PriceTable } from '../domain/pricing';

/** Each pass recomputes this much history: a process that was down a few minutes leaves no gap. */
const LOOKBACK_MS = 15 * 60_000;
/** The first pass after start looks back a day. */
const START_LOOKBACK_MS = 24 * 60 * 60_000;

/**
 * Warm replica time per deployment and minute, from the replicas' own ready and
 * stopped times, priced for Active deployments. Each pass recomputes whole
 * minutes and overwrites them, so any number of processes can run it and a
 * repeated pass changes nothing.
 */
export class CapacityAccountant {
  private timer: NodeJS.Timeout | null = null;
  private first = true;

  constructor(
    private readonly prisma: PrismaClient,
    private readonly prices: PriceTable,
    private readonly intervalMs: number,
    private readonly log: Logger,
  ) {}

  start() {
    const run = () =>
      void this.account(Date.now()).catch((err) =>
        this.log.error({ err: (err as Error).message }, 'capacity accounting failed; next pass retries'),
      );
    run();
    this.timer = setInterval(run, this.intervalMs);
    this.timer.unref();
  }

  stop() {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Recomputes the minutes from the lookback to `now` (the current minute partially). Returns rows written. */
  async account(now: number): Promise<number> {
    const from = now - (this.first ? START_LOOKBACK_MS : LOOKBACK_MS);
    this.first = false;
    // A replica is warm from readyAt until stoppedAt, or until now while READY or DRAINING.
    const rows = await this.prisma.$queryRawUnsafe<
      Array<{ deploymentId: string; minute: Date; seconds: number; mode: BillingMode; target: BillingTarget; gpu: string }>
    >(
      `WITH warm AS (
         SELECT r."deploymentId", r."readyAt" AS s,
                COALESCE(r."stoppedAt", CASE WHEN r.state IN ('READY', 'DRAINING') THEN $1::timestamp(3) ELSE r."readyAt" END) AS e
         FROM "Replica" r
         WHERE r."readyAt" IS NOT NULL AND r."readyAt" < $1::timestamp(3)
           AND COALESCE(r."stoppedAt", $1::timestamp(3)) > date_trunc('minute', $2::timestamp(3))
       )
       SELECT w."deploymentId", m.minute,
              SUM(EXTRACT(EPOCH FROM LEAST(w.e, m.minute + interval '1 minute') - GREATEST(w.s, m.minute)))::float8 AS seconds,
              d.mode::text AS mode, d.target::text AS target, d.gpu
       FROM warm w
       JOIN generate_series(date_trunc('minute', $2::timestamp(3)), date_trunc('minute', $1::timestamp(3)), interval '1 minute') AS m(minute)
         ON w.s < m.minute + interval '1 minute' AND w.e > m.minute
       JOIN "Deployment" d ON d.id = w."deploymentId"
       GROUP BY w."deploymentId", m.minute, d.mode, d.target, d.gpu
       ORDER BY w."deploymentId", m.minute`,
      sqlTimestamp(now),
      sqlTimestamp(from),
    );
    if (rows.length === 0) return 0;
    await this.prisma.$executeRawUnsafe(
      `INSERT INTO "CapacityRollup" ("deploymentId", minute, "replicaSeconds", "costUsd")
       SELECT * FROM unnest($1::text[], $2::timestamp(3)[], $3::float8[], $4::numeric[])
       ON CONFLICT ("deploymentId", minute) DO UPDATE SET "replicaSeconds" = EXCLUDED."replicaSeconds", "costUsd" = EXCLUDED."costUsd"`,
      rows.map((r) => r.deploymentId),
      rows.map((r) => sqlTimestamp(r.minute)),
      rows.map((r) => r.seconds),
      rows.map((r) => capacityCostUsd(this.prices, r, r.seconds).toFixed(9)),
    );
    return rows.length;
  }
}
