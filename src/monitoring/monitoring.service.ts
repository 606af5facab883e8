import { Inject, Injectable } from '@nestjs/common';
import { z } from 'zod';
import type { Logger } from 'pino';
import { LOGGER, PRISMA } from '../common/core.module';
import { toGraphQLError } from '../common/graphql-errors';
import { CONFIG, type Config } from '../config/config';
import type { PrismaClient } from '../database/prisma';
import { DomainError, ErrorCode, notFound } from '../domain/errors';
import { localProvider } from '../providers/local';
import { modalFake } from '../providers/modal';
import { mergeSeries, SampleRow } from './merge';
import { SKETCH_RELATIVE_ACCURACY } from './sampler';
import type { ConsoleInfo, DeploymentMetrics, ReplicaLogs } from './monitoring.types';

/** Most points one series may have. */
export const MAX_POINTS = 1440;
export const MAX_LOG_LINES = 1000;

const metricsArgs = z
  .object({
    from: z.date({ error: 'from must be a date-time' }),
    to: z.date({ error: 'to must be a date-time' }),
    step: z
      .number()
      .int('step must be a whole number of seconds')
      .min(60, 'step must be at least 60 seconds (samples are per minute)')
      .max(86_400, 'step must be at most 86400 seconds')
      .refine((s) => s % 60 === 0, 'step must be a multiple of 60 seconds'),
  })
  .refine((a) => a.to.getTime() > a.from.getTime(), 'to must be after from')
  .refine(
    (a) => (a.to.getTime() - a.from.getTime()) / (a.step * 1000) <= MAX_POINTS,
    `from..to over step must give at most ${MAX_POINTS} points; widen step or narrow the range`,
  );

const tailArg = z
  .number()
  .int('tail must be a whole number of lines')
  .min(1, 'tail must be at least 1')
  .max(MAX_LOG_LINES, `tail must be at most ${MAX_LOG_LINES}`);

/** Load series from the gateways' per-minute samples, replica logs from the providers, and the console's settings. */
@Injectable()
export class MonitoringService {
  constructor(
    @Inject(PRISMA) private readonly prisma: PrismaClient,
    @Inject(CONFIG) private readonly config: Config,
    @Inject(LOGGER) private readonly log?: Logger,
  ) {}

  /**
   * Field resolvers run without Nest's enhancers (no guard, no exception filter: the parent was authorized), so the
   * errors of the two field methods are mapped here to GraphQL errors with extensions.code.
   */
  private async mapped<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      throw toGraphQLError(err, this.log);
    }
  }

  metrics(deploymentId: string, args: { from: Date; to: Date; step: number }): Promise<DeploymentMetrics> {
    return this.mapped(() => this.series(deploymentId, args));
  }

  logs(replica: { id: string; deploymentId: string; providerId: string | null }, tail: number): Promise<ReplicaLogs> {
    return this.mapped(() => this.readLogs(replica, tail));
  }

  private async series(deploymentId: string, args: { from: Date; to: Date; step: number }): Promise<DeploymentMetrics> {
    const a = metricsArgs.parse(args);
    // Steps start on a minute boundary (samples are per minute).
    const from = new Date(a.from.getTime() - (a.from.getTime() % 60_000));
    const to = a.to;
    const [rows, capacity] = await Promise.all([
      this.prisma.loadSample.findMany({ where: { deploymentId, minute: { gte: from, lt: to } }, orderBy: { minute: 'asc' } }),
      this.prisma.capacityRollup.findMany({ where: { deploymentId, minute: { gte: from, lt: to } } }),
    ]);
    return {
      from,
      to,
      stepSeconds: a.step,
      relativeAccuracy: SKETCH_RELATIVE_ACCURACY,
      points: mergeSeries(rows as unknown as SampleRow[], capacity, from, to, a.step),
    };
  }

  /** The replica of a workspace's deployment, or NOT_FOUND. */
  async replica(workspaceId: string, id: string) {
    const r = await this.prisma.replica.findFirst({ where: { id, deployment: { workspaceId } } });
    if (!r) throw notFound('replica', id);
    return r;
  }

  private async readLogs(replica: { id: string; deploymentId: string; providerId: string | null }, tail: number): Promise<ReplicaLogs> {
    const n = tailArg.parse(tail);
    const d = await this.prisma.deployment.findUnique({ where: { id: replica.deploymentId }, select: { target: true } });
    if (!d) throw notFound('deployment', replica.deploymentId);
    const none = (reason: string): ReplicaLogs => ({ replicaId: replica.id, available: false, reason, lines: [] });
    let lines: string[] | null;
    switch (d.target) {
      case 'LOCAL':
        lines = await localProvider(this.config).logs(replica.id, n);
        break;
      case 'MODAL':
        if (!this.config.MODAL_FAKE || !replica.providerId)
          return none("Modal keeps a Sandbox's output in your Modal account: see the Sandbox's logs in Modal's dashboard.");
        lines = await modalFake(this.config).logs(replica.providerId, n);
        break;
      case 'RUNPOD':
        return none("RunPod's API gives no per-worker logs: see the endpoint's workers in your RunPod console.");
      case 'CUSTOM':
        return none('Custom GPU boxes are yours: read the server logs on the box (docker compose logs, journalctl).');
      default:
        throw new DomainError(ErrorCode.INTERNAL, `no log source for target ${String(d.target)}`);
    }
    if (lines === null) return none('This replica has written no log yet.');
    return { replicaId: replica.id, available: true, reason: null, lines };
  }

  info(): ConsoleInfo {
    return {
      temporalUiUrl: this.config.TEMPORAL_UI_URL.replace(/\/+$/, ''),
      temporalNamespace: this.config.TEMPORAL_NAMESPACE,
      metricsRetentionDays: this.config.METRICS_RETENTION_DAYS,
      metricsFlushIntervalMs: this.config.METRICS_FLUSH_INTERVAL_MS,
    };
  }
}
