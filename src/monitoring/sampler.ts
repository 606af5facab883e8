// LoadSampler: per-minute load samples of each deployment, written by every gateway process off the request path
// (Deployment.metrics and the console's charts read them, src/monitoring/metrics.ts merges the processes' rows).
import { DDSketch } from '@datadog/sketches-js';
import type { Logger } from 'pino';
import { sqlTimestamp, type PrismaClient } from '../database/prisma';

/**
 * The latency sketches' relative accuracy: a percentile read from a sketch is within 1% of the true value at that rank
 * (DDSketch's guarantee, which holds after merging any number of sketches).
 */
export const SKETCH_RELATIVE_ACCURACY = 0.01;

export const newSketch = () => new DDSketch({ relativeAccuracy: SKETCH_RELATIVE_ACCURACY });

/** One finished (or refused) request of a deployment, as the gateway saw it. */
export interface RequestSample {
  deploymentId: string;
  /** When it finished, epoch ms. */
  at: number;
  /** Null when it succeeded; else the OpenAI error code or the way it ended (upstream_broken, http_500). */
  errorCode: string | null;
  latencyMs: number;
  /** Time to the first byte of the response body; null when none came. */
  ttftMs: number | null;
  promptTokens: number;
  completionTokens: number;
  costUsd: number;
}

/** What a sampler reads from its gateway process and Postgres; functions so that tests drive it without a gateway. */
export interface SamplerSources {
  /** This process's in flight and queued requests of a deployment now. */
  load(deploymentId: string): { inFlight: number; queued: number } | undefined;
  /** Deployments with local load now. */
  loaded(): Iterable<string>;
}

export interface LoadSamplerOptions {
  prisma: PrismaClient;
  gatewayId: string;
  log: Logger;
  /** How often rows are written, ms (METRICS_FLUSH_INTERVAL_MS). */
  flushMs: number;
  /** Samples older than this many days are deleted (METRICS_RETENTION_DAYS). */
  retentionDays: number;
  sources: SamplerSources;
  /** Clock (tests). */
  now?: () => number;
}

/** One deployment's minute in this process. */
interface Minute {
  deploymentId: string;
  minute: number;
  inFlight: number[];
  queued: number[];
  requests: number;
  errors: Record<string, number>;
  promptTokens: number;
  completionTokens: number;
  costUsd: number;
  latency: DDSketch;
  ttft: DDSketch;
  replicasReady: number | null;
  replicasStarting: number | null;
  replicasDraining: number | null;
  desired: number | null;
  /** Changed since its last write. */
  dirty: boolean;
}

/** Deployments whose replicas and scaler are sampled even when this process has no traffic for them. */
const LIVE_STATUSES = ['PROVISIONING', 'ACTIVE', 'STOPPING'] as const;
/** Minutes held while Postgres is unreachable, before the oldest are dropped. */
const MAX_HELD_MINUTES = 50_000;

const UPSERT = `INSERT INTO "LoadSample" ("deploymentId", minute, "gatewayId", "updatedAt", "inFlight", queued, requests, errors,
    "promptTokens", "completionTokens", "costUsd", latency, ttft, "replicasReady", "replicasStarting", "replicasDraining", desired)
  SELECT u.d, u.m, $3, now(), u.inf::jsonb, u.q::jsonb, u.rq, u.er::jsonb, u.pt, u.ct, u.cost,
         decode(u.lat, 'base64'), decode(u.tt, 'base64'), u.rr, u.rs, u.rd, u.de
  FROM unnest($1::text[], $2::timestamp(3)[], $4::text[], $5::text[], $6::int[], $7::text[], $8::bigint[], $9::bigint[], $10::numeric[],
              $11::text[], $12::text[], $13::int[], $14::int[], $15::int[], $16::int[])
    AS u(d, m, inf, q, rq, er, pt, ct, cost, lat, tt, rr, rs, rd, de)
  -- A deployment deleted meanwhile has no charts to feed.
  WHERE EXISTS (SELECT 1 FROM "Deployment" WHERE id = u.d)
  ORDER BY u.d, u.m
  ON CONFLICT ("deploymentId", minute, "gatewayId") DO UPDATE SET
    "updatedAt" = EXCLUDED."updatedAt", "inFlight" = EXCLUDED."inFlight", queued = EXCLUDED.queued, requests = EXCLUDED.requests,
    errors = EXCLUDED.errors, "promptTokens" = EXCLUDED."promptTokens", "completionTokens" = EXCLUDED."completionTokens",
    "costUsd" = EXCLUDED."costUsd", latency = EXCLUDED.latency, ttft = EXCLUDED.ttft, "replicasReady" = EXCLUDED."replicasReady",
    "replicasStarting" = EXCLUDED."replicasStarting", "replicasDraining" = EXCLUDED."replicasDraining", desired = EXCLUDED.desired`;

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  // The loser's rejection is expected (a query that fails after its time ran out): never unhandled.
  p.catch(() => {});
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
      timer.unref();
    }),
  ]).finally(() => clearTimeout(timer));
}

const maxOrNull = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : Math.max(a, b));

/**
 * Per deployment and minute, what one gateway process saw: in flight and queued once a second, every request's
 * outcome, latency and time to first byte (into DDSketches), tokens and cost, and the deployment's replicas by state
 * and desired count. On the request path only a map update and two sketch inserts; the rows are written every
 * flushMs. Each process owns its rows and rewrites them whole (idempotent: a write whose answer was lost is simply
 * written again), so several processes merge at read time without double counting. Past minutes leave memory once
 * written; the retention sweep deletes rows older than retentionDays.
 */
export class LoadSampler {
  private readonly minutes = new Map<string, Minute>();
  private live: string[] = [];
  private liveReadAt = -Infinity;
  private sweepAt = -Infinity;
  private tickTimer: NodeJS.Timeout | null = null;
  private flushTimer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  private lastErrorLogAt = 0;
  private readonly now: () => number;

  constructor(private readonly o: LoadSamplerOptions) {
    this.now = o.now ?? Date.now;
  }

  start() {
    this.tickTimer = setInterval(() => this.tick(), 1000);
    this.tickTimer.unref();
    this.flushTimer = setInterval(() => void this.flush(), this.o.flushMs);
    this.flushTimer.unref();
  }

  private row(deploymentId: string, at: number): Minute {
    const minute = at - (at % 60_000);
    const k = `${deploymentId}\0${minute}`;
    let m = this.minutes.get(k);
    if (!m) {
      if (this.minutes.size >= MAX_HELD_MINUTES) this.minutes.delete(this.minutes.keys().next().value as string);
      m = {
        deploymentId,
        minute,
        inFlight: new Array<number>(60).fill(-1),
        queued: new Array<number>(60).fill(-1),
        requests: 0,
        errors: {},
        promptTokens: 0,
        completionTokens: 0,
        costUsd: 0,
        latency: newSketch(),
        ttft: newSketch(),
        replicasReady: null,
        replicasStarting: null,
        replicasDraining: null,
        desired: null,
        dirty: true,
      };
      this.minutes.set(k, m);
    }
    return m;
  }

  /** A finished or refused request (the request path: no I/O). */
  record(s: RequestSample) {
    const m = this.row(s.deploymentId, s.at);
    m.requests++;
    if (s.errorCode) m.errors[s.errorCode] = (m.errors[s.errorCode] ?? 0) + 1;
    m.latency.accept(Math.max(0, s.latencyMs));
    if (s.ttftMs !== null) m.ttft.accept(Math.max(0, s.ttftMs));
    m.promptTokens += s.promptTokens;
    m.completionTokens += s.completionTokens;
    m.costUsd += s.costUsd;
    m.dirty = true;
  }

  /** Samples in flight and queued of every deployment this process tracks, for the current second. */
  tick(at = this.now()) {
    const ids = new Set<string>([...this.live, ...this.o.sources.loaded()]);
    const sec = Math.floor((at % 60_000) / 1000);
    for (const id of ids) {
      const l = this.o.sources.load(id);
      const m = this.row(id, at);
      const inFlight = l?.inFlight ?? 0;
      const queued = l?.queued ?? 0;
      // The second's peak when ticks come faster than once a second.
      if (inFlight > m.inFlight[sec] || queued > m.queued[sec] || m.inFlight[sec] < 0) {
        m.inFlight[sec] = Math.max(m.inFlight[sec], inFlight);
        m.queued[sec] = Math.max(m.queued[sec], queued);
        m.dirty = true;
      }
    }
  }

  /** Reads replica counts (and, now and then, the scaler's desired count) into the current minutes, then writes. */
  flush(): Promise<void> {
    if (!this.flushing) this.flushing = this.write().finally(() => (this.flushing = null));
    return this.flushing;
  }

  private async refreshLive(at: number) {
    if (at - this.liveReadAt < Math.max(this.o.flushMs, 5000)) return;
    this.liveReadAt = at;
    const rows = await this.o.prisma.deployment.findMany({ where: { status: { in: [...LIVE_STATUSES] } }, select: { id: true } });
    this.live = rows.map((r) => r.id);
  }

  private async gauges(at: number) {
    const current = [...this.minutes.values()].filter((m) => m.minute === at - (at % 60_000));
    if (!current.length) return;
    const ids = [...new Set(current.map((m) => m.deploymentId))];
    const counts = await this.o.prisma.replica.groupBy({
      by: ['deploymentId', 'state'],
      where: { deploymentId: { in: ids }, state: { in: ['STARTING', 'READY', 'DRAINING'] } },
      _count: { _all: true },
    });
    const of = (id: string, state: string) => counts.find((c) => c.deploymentId === id && c.state === state)?._count._all ?? 0;
    // The scaler's desired count as it last applied it: its newest scale event's `to`, read from Postgres like the rest
    // (no Temporal call from here); an event from before `to` was recorded says it in its text ("2 -> 3: <reason>");
    // before any, the replicas the deploy started.
    const scaled = await this.o.prisma.$queryRawUnsafe<Array<{ deploymentId: string; message: string; to: string | null }>>(
      `SELECT DISTINCT ON ("deploymentId") "deploymentId", message, data->>'to' AS "to" FROM "DeploymentEvent"
       WHERE "deploymentId" = ANY($1::text[]) AND kind IN ('scale.up', 'scale.down') ORDER BY "deploymentId", at DESC, id DESC`,
      ids,
    );
    const desiredOf = new Map<string, number>();
    for (const r of scaled) {
      const to = r.to ?? /-> (\d+)/.exec(r.message)?.[1];
      if (to !== undefined && /^\d+$/.test(to)) desiredOf.set(r.deploymentId, Number(to));
    }
    for (const m of current) {
      const ready = of(m.deploymentId, 'READY');
      const starting = of(m.deploymentId, 'STARTING');
      const draining = of(m.deploymentId, 'DRAINING');
      const desired = desiredOf.get(m.deploymentId) ?? ready + starting;
      const before = [m.replicasReady, m.replicasStarting, m.replicasDraining, m.desired].join();
      m.replicasReady = maxOrNull(m.replicasReady, ready);
      m.replicasStarting = maxOrNull(m.replicasStarting, starting);
      m.replicasDraining = maxOrNull(m.replicasDraining, draining);
      m.desired = maxOrNull(m.desired, desired);
      if ([m.replicasReady, m.replicasStarting, m.replicasDraining, m.desired].join() !== before) m.dirty = true;
    }
  }

  private async write() {
    const at = this.now();
    try {
      await this.refreshLive(at);
      await this.gauges(at);
    } catch (err) {
      this.failed(err);
    }
    const batch = [...this.minutes.values()].filter((m) => m.dirty).sort((a, b) => (a.deploymentId < b.deploymentId ? -1 : 1));
    if (batch.length) {
      for (const m of batch) m.dirty = false;
      try {
        await this.o.prisma.$executeRawUnsafe(
          UPSERT,
          batch.map((m) => m.deploymentId),
          batch.map((m) => sqlTimestamp(m.minute)),
          this.o.gatewayId,
          batch.map((m) => JSON.stringify(m.inFlight)),
          batch.map((m) => JSON.stringify(m.queued)),
          batch.map((m) => m.requests),
          batch.map((m) => JSON.stringify(m.errors)),
          batch.map((m) => String(m.promptTokens)),
          batch.map((m) => String(m.completionTokens)),
          batch.map((m) => m.costUsd.toFixed(10)),
          batch.map((m) => Buffer.from(m.latency.toProto()).toString('base64')),
          batch.map((m) => Buffer.from(m.ttft.toProto()).toString('base64')),
          batch.map((m) => m.replicasReady),
          batch.map((m) => m.replicasStarting),
          batch.map((m) => m.replicasDraining),
          batch.map((m) => m.desired),
        );
      } catch (err) {
        for (const m of batch) m.dirty = true;
        this.failed(err);
        return;
      }
    }
    // Written minutes before the current one are complete: they leave memory.
    const current = at - (at % 60_000);
    for (const [k, m] of this.minutes) if (m.minute < current && !m.dirty) this.minutes.delete(k);
    await this.sweep(at);
  }

  /** Deletes samples past the retention, once an hour per process (any process's sweep serves all). */
  private async sweep(at: number) {
    if (at - this.sweepAt < 3_600_000) return;
    this.sweepAt = at;
    try {
      const n = await this.o.prisma.$executeRawUnsafe(
        `DELETE FROM "LoadSample" WHERE minute < $1::timestamp(3)`,
        sqlTimestamp(at - this.o.retentionDays * 86_400_000),
      );
      if (n) this.o.log.info({ rows: n, retentionDays: this.o.retentionDays }, 'load samples past their retention deleted');
    } catch (err) {
      this.failed(err);
    }
  }

  private failed(err: unknown) {
    const now = Date.now();
    if (now - this.lastErrorLogAt < 30_000) return;
    this.lastErrorLogAt = now;
    this.o.log.warn({ err: (err as Error).message }, 'load samples not written; held in memory and retried next interval');
  }

  /** Stops sampling and writes what is held. */
  async close() {
    if (this.tickTimer) clearInterval(this.tickTimer);
    if (this.flushTimer) clearInterval(this.flushTimer);
    this.tickTimer = this.flushTimer = null;
    // Charts are advisory: a Postgres that does not answer must not hold the api's shutdown.
    await withTimeout(this.flush(), 5000).catch((err: Error) =>
      this.o.log.warn({ err: err.message }, 'last load samples not written at shutdown'),
    );
  }
}
