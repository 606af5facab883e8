import type { Logger } from 'pino';
import { sumInto } from '../common/stats';
import { sqlTimestamp, type PrismaClient } from '../database/prisma';

/** One finished request, as the gateway saw it. */
export interface UsageSample {
  deploymentId: string;
  apiKeyId: string;
  /** When it finished, epoch ms. */
  at: number;
  ok: boolean;
  promptTokens: number;
  completionTokens: number;
  latencyMs: number;
  /** Time to the first byte of the response body; null when none came. */
  ttftMs: number | null;
  /** Images generated and audio seconds served (absent: none). */
  images?: number;
  audioSeconds?: number;
  costUsd: number;
}

interface Row {
  deploymentId: string;
  apiKeyId: string;
  minute: number;
  requests: number;
  errors: number;
  promptTokens: number;
  completionTokens: number;
  latencyMsSum: number;
  ttftMsSum: number;
  ttftCount: number;
  images: number;
  audioSeconds: number;
  costUsd: number;
  /** The latest request in it, epoch ms: the key's lastUsedAt. */
  lastAt: number;
}

/** Rows held while Postgres is unreachable before the oldest are dropped (and counted). */
const MAX_PENDING_ROWS = 100_000;

const UPSERT = `INSERT INTO "UsageRollup" ("deploymentId", "apiKeyId", minute, requests, errors, "promptTokens", "completionTokens", "latencyMsSum", "ttftMsSum", "ttftCount", "costUsd", images, "audioSeconds")
         SELECT u.* FROM unnest($1::text[], $2::text[], $3::timestamp(3)[], $4::int[], $5::int[], $6::bigint[], $7::bigint[], $8::float8[], $9::float8[], $10::int[], $11::numeric[], $12::int[], $13::float8[])
           AS u(d, k, m, rq, er, pt, ct, lat, tt, tc, cost, im, au)
         -- Usage of a deployment or key deleted meanwhile has nobody to bill: skipped, not retried forever.
         WHERE EXISTS (SELECT 1 FROM "Deployment" WHERE id = u.d) AND EXISTS (SELECT 1 FROM "ApiKey" WHERE id = u.k)
         ORDER BY u.d, u.k, u.m
         ON CONFLICT ("deploymentId", "apiKeyId", minute) DO UPDATE SET
           requests = "UsageRollup".requests + EXCLUDED.requests,
           errors = "UsageRollup".errors + EXCLUDED.errors,
           "promptTokens" = "UsageRollup"."promptTokens" + EXCLUDED."promptTokens",
           "completionTokens" = "UsageRollup"."completionTokens" + EXCLUDED."completionTokens",
           "latencyMsSum" = "UsageRollup"."latencyMsSum" + EXCLUDED."latencyMsSum",
           "ttftMsSum" = "UsageRollup"."ttftMsSum" + EXCLUDED."ttftMsSum",
           "ttftCount" = "UsageRollup"."ttftCount" + EXCLUDED."ttftCount",
           "costUsd" = "UsageRollup"."costUsd" + EXCLUDED."costUsd",
           images = "UsageRollup".images + EXCLUDED.images,
           "audioSeconds" = "UsageRollup"."audioSeconds" + EXCLUDED."audioSeconds"`;

/** What a recorder reports about its writes (the api's metrics). */
export interface RecorderEvents {
  /** One write attempt: its rows and whether it was written. */
  onFlush?: (rows: number, ok: boolean) => void;
  /** Rows dropped because Postgres stayed unreachable past MAX_PENDING_ROWS. */
  onDropped?: (rows: number) => void;
}

/** A batch whose transaction may or may not have committed: its connection broke after the write was sent. */
interface InDoubt {
  xid: string;
  batch: Map<string, Row>;
}

/**
 * Per deployment, key and minute rollups, summed in memory on the request path
 * (a map update) and written by one multi-row upsert per interval. Several
 * gateway processes add into the same rows. A failed write keeps its rows for
 * the next one (up to MAX_PENDING_ROWS, the oldest dropped and counted past it);
 * close() writes what is left. Each write is a transaction whose id is known
 * before it commits: when the connection breaks after the write was sent, the
 * next flush asks Postgres whether that transaction committed (txid_status)
 * before it writes those rows again, so a write whose answer was lost is never
 * counted twice.
 */
export class UsageRecorder {
  private pending = new Map<string, Row>();
  private inDoubt: InDoubt | null = null;
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  /** Rows dropped because Postgres stayed unreachable past MAX_PENDING_ROWS. */
  dropped = 0;
  /** Failed write attempts in a row (0 while writes succeed), and when that was last logged. */
  private failures = 0;
  private lastFailureLogAt = 0;
  private readonly events: RecorderEvents;

  constructor(
    private readonly prisma: PrismaClient,
    private readonly intervalMs: number,
    private readonly log: Logger,
    events?: RecorderEvents | ((rows: number, ok: boolean) => void),
    private readonly maxPendingRows = MAX_PENDING_ROWS,
  ) {
    this.events = typeof events === 'function' ? { onFlush: events } : (events ?? {});
  }

  /** Rows held in memory, not yet written (including a batch whose commit is in doubt). */
  get pendingRows(): number {
    return this.pending.size + (this.inDoubt?.batch.size ?? 0);
  }

  start() {
    this.timer = setInterval(() => void this.flush(), this.intervalMs);
    this.timer.unref();
  }

  record(s: UsageSample) {
    const minute = s.at - (s.at % 60_000);
    const k = `${s.deploymentId}\0${s.apiKeyId}\0${minute}`;
    let r = this.pending.get(k);
    if (!r) {
      if (this.pending.size >= this.maxPendingRows) {
        const oldest = this.pending.keys().next().value as string;
        this.pending.delete(oldest);
        this.dropped++;
        this.events.onDropped?.(1);
        if (this.dropped === 1 || this.dropped % 1000 === 0)
          this.log.error(
            { dropped: this.dropped, held: this.pending.size },
            'usage rows held in memory reached their bound while Postgres is unreachable; dropping the oldest',
          );
      }
      r = {
        deploymentId: s.deploymentId,
        apiKeyId: s.apiKeyId,
        minute,
        requests: 0,
        errors: 0,
        promptTokens: 0,
        completionTokens: 0,
        latencyMsSum: 0,
        ttftMsSum: 0,
        ttftCount: 0,
        images: 0,
        audioSeconds: 0,
        costUsd: 0,
        lastAt: s.at,
      };
      this.pending.set(k, r);
    }
    if (s.at > r.lastAt) r.lastAt = s.at;
    r.images += s.images ?? 0;
    r.audioSeconds += s.audioSeconds ?? 0;
    r.requests++;
    if (!s.ok) r.errors++;
    r.promptTokens += s.promptTokens;
    r.completionTokens += s.completionTokens;
    r.latencyMsSum += s.latencyMs;
    if (s.ttftMs !== null) {
      r.ttftMsSum += s.ttftMs;
      r.ttftCount++;
    }
    r.costUsd += s.costUsd;
  }

  /** Writes every pending row; concurrent calls share one write. */
  flush(): Promise<void> {
    if (!this.flushing) this.flushing = this.write().finally(() => (this.flushing = null));
    return this.flushing;
  }

  /** Puts rows that were not written back under anything recorded meanwhile. */
  private restore(batch: Map<string, Row>) {
    for (const [k, r] of batch) {
      const now = this.pending.get(k);
      if (now) merge(r, now);
      this.pending.set(k, r);
    }
  }

  private failed(rows: number, err: unknown) {
    this.failures++;
    this.events.onFlush?.(rows, false);
    const now = Date.now();
    if (this.failures === 1 || now - this.lastFailureLogAt >= 30_000) {
      this.lastFailureLogAt = now;
      this.log.error(
        { err: (err as Error).message, rows, held: this.pendingRows, failures: this.failures },
        'usage rollup write failed; holding the rows in memory and retrying every interval',
      );
    }
  }

  private recovered(rows: number) {
    if (this.failures > 0)
      this.log.warn({ failures: this.failures, rows }, 'usage rollup writes resumed; the rows held meanwhile are written');
    this.failures = 0;
  }

  /** Settles a batch in doubt: dropped if its transaction committed, pending again if not. False: not known yet. */
  private async settleInDoubt(d: InDoubt): Promise<boolean> {
    let status: string | null;
    try {
      const r = await this.prisma.$queryRawUnsafe<Array<{ s: string | null }>>('SELECT txid_status($1::bigint) AS s', d.xid);
      status = r[0]?.s ?? null;
    } catch (err) {
      this.failed(d.batch.size, err);
      return false;
    }
    if (status === 'in progress') return false;
    this.inDoubt = null;
    if (status === 'committed') {
      this.log.warn({ rows: d.batch.size }, 'usage rollup write committed though its answer was lost; not written again');
      this.events.onFlush?.(d.batch.size, true);
      this.recovered(d.batch.size);
      await this.touchKeys([...d.batch.values()]);
    } else this.restore(d.batch);
    return true;
  }

  private async write() {
    if (this.inDoubt && !(await this.settleInDoubt(this.inDoubt))) return;
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    // One order for every gateway: concurrent upserts of the same rows cannot deadlock.
    const rows = [...batch.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, r]) => r);
    let xid: string | null = null;
    try {
      await this.prisma.$transaction(async (tx) => {
        xid = (await tx.$queryRawUnsafe<Array<{ xid: string }>>('SELECT txid_current()::text AS xid'))[0].xid;
        await tx.$executeRawUnsafe(
          UPSERT,
          rows.map((r) => r.deploymentId),
          rows.map((r) => r.apiKeyId),
          rows.map((r) => sqlTimestamp(r.minute)),
          rows.map((r) => r.requests),
          rows.map((r) => r.errors),
          rows.map((r) => String(r.promptTokens)),
          rows.map((r) => String(r.completionTokens)),
          rows.map((r) => r.latencyMsSum),
          rows.map((r) => r.ttftMsSum),
          rows.map((r) => r.ttftCount),
          rows.map((r) => r.costUsd.toFixed(9)),
          rows.map((r) => r.images),
          rows.map((r) => r.audioSeconds),
        );
      });
    } catch (err) {
      // Before the transaction had an id nothing was written; after, the commit may have happened: ask before writing again.
      if (xid !== null) this.inDoubt = { xid, batch };
      else this.restore(batch);
      this.failed(rows.length, err);
      return;
    }
    this.events.onFlush?.(rows.length, true);
    this.recovered(rows.length);
    await this.touchKeys(rows);
  }

  /** The keys' lastUsedAt from the rows just written: one statement per flush, never on the request path; advisory, so a failure is only logged. */
  private async touchKeys(rows: Row[]) {
    const last = new Map<string, number>();
    for (const r of rows) last.set(r.apiKeyId, Math.max(last.get(r.apiKeyId) ?? 0, r.lastAt));
    // (rows are sorted by deployment then key; the keys are sorted again so that gateways lock them in one order.)
    const ids = [...last.keys()].sort();
    try {
      await this.prisma.$executeRawUnsafe(
        `UPDATE "ApiKey" AS k SET "lastUsedAt" = GREATEST(COALESCE(k."lastUsedAt", u.at), u.at)
         FROM unnest($1::text[], $2::timestamp(3)[]) AS u(id, at) WHERE k.id = u.id`,
        ids,
        ids.map((id) => sqlTimestamp(last.get(id)!)),
      );
    } catch (err) {
      this.log.warn(
        { err: (err as Error).message, keys: last.size },
        "could not write the keys' lastUsedAt (advisory: skipped for this flush)",
      );
    }
  }

  async close() {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush();
    if (this.pendingRows) await this.flush();
  }
}

const SUMMED = [
  'requests',
  'errors',
  'promptTokens',
  'completionTokens',
  'latencyMsSum',
  'ttftMsSum',
  'ttftCount',
  'images',
  'audioSeconds',
  'costUsd',
] as const;

function merge(into: Row, r: Row) {
  sumInto(into, r, SUMMED);
  into.lastAt = Math.max(into.lastAt, r.lastAt);
}
