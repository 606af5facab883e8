import { Inject, Injectable } from '@nestjs/common';
import { z } from 'zod';
import { PRISMA } from '../common/core.module';
import { sqlTimestamp, type PrismaClient } from '../database/prisma';
import { sumInto } from '../common/stats';
import { notFound } from '../domain/errors';
import { UsageGranularity, type UsageBucket, type UsageInput, type UsageReport } from './usage.types';

const BUCKET_MS: Record<UsageGranularity, number> = { MINUTE: 60_000, HOUR: 3_600_000, DAY: 86_400_000 };
const MAX_BUCKETS = 5000;

const inputSchema = z
  .object({
    from: z.date({ error: 'must be a date-time' }),
    to: z.date({ error: 'must be a date-time' }),
    granularity: z.enum(UsageGranularity),
    deploymentId: z.string().min(1).optional().nullable(),
    apiKeyId: z.string().min(1).optional().nullable(),
  })
  .superRefine((v, ctx) => {
    if (v.to.getTime() <= v.from.getTime()) ctx.addIssue({ code: 'custom', path: ['to'], message: 'must be after from' });
    const buckets = Math.ceil((v.to.getTime() - v.from.getTime()) / BUCKET_MS[v.granularity]);
    if (buckets > MAX_BUCKETS) {
      ctx.addIssue({
        code: 'custom',
        path: ['granularity'],
        message: `from..to is ${buckets} ${v.granularity} buckets; at most ${MAX_BUCKETS}: use a coarser granularity or a shorter range`,
      });
    }
  });

interface Sums {
  start: Date;
  requests: number;
  errors: number;
  prompt: string;
  completion: string;
  latency: number;
  ttft: number;
  ttftCount: number;
  images: number;
  audioSeconds: number;
  tokenCost: string;
  seconds: number;
  capacityCost: string;
}

/** USD to the precision the rollups keep (1e-10): a single token at list price is visible. */
const usd = (n: number) => Math.round(n * 1e10) / 1e10;

@Injectable()
export class UsageService {
  constructor(@Inject(PRISMA) private readonly prisma: PrismaClient) {}

  async report(workspaceId: string, raw: UsageInput): Promise<UsageReport> {
    const input = inputSchema.parse(raw);
    if (
      input.deploymentId &&
      !(await this.prisma.deployment.findFirst({ where: { id: input.deploymentId, workspaceId }, select: { id: true } }))
    ) {
      throw notFound('deployment', input.deploymentId);
    }
    if (input.apiKeyId && !(await this.prisma.apiKey.findFirst({ where: { id: input.apiKeyId, workspaceId }, select: { id: true } }))) {
      throw notFound('API key', input.apiKeyId);
    }
    const unit = input.granularity.toLowerCase();
    const params: unknown[] = [unit, workspaceId, sqlTimestamp(input.from), sqlTimestamp(input.to)];
    let usageFilter = '';
    let capacityFilter = '';
    if (input.deploymentId) {
      params.push(input.deploymentId);
      usageFilter += ` AND u."deploymentId" = $${params.length}`;
      capacityFilter += ` AND c."deploymentId" = $${params.length}`;
    }
    const usage = input.apiKeyId ? [...params, input.apiKeyId] : params;
    if (input.apiKeyId) usageFilter += ` AND u."apiKeyId" = $${usage.length}`;
    const [tokens, capacity] = await Promise.all([
      this.prisma.$queryRawUnsafe<Sums[]>(
        `SELECT date_trunc($1, u.minute) AS start, SUM(u.requests)::int AS requests, SUM(u.errors)::int AS errors,
                SUM(u."promptTokens")::text AS prompt, SUM(u."completionTokens")::text AS completion,
                SUM(u.images)::int AS images, SUM(u."audioSeconds")::float8 AS "audioSeconds",
                SUM(u."latencyMsSum")::float8 AS latency, SUM(u."ttftMsSum")::float8 AS ttft, SUM(u."ttftCount")::int AS "ttftCount",
                SUM(u."costUsd")::text AS "tokenCost"
         FROM "UsageRollup" u JOIN "Deployment" d ON d.id = u."deploymentId"
         WHERE d."workspaceId" = $2 AND u.minute >= $3::timestamp(3) AND u.minute < $4::timestamp(3)${usageFilter}
         GROUP BY 1 ORDER BY 1`,
        ...usage,
      ),
      input.apiKeyId
        ? Promise.resolve([] as Sums[])
        : this.prisma.$queryRawUnsafe<Sums[]>(
            `SELECT date_trunc($1, c.minute) AS start, SUM(c."replicaSeconds")::float8 AS seconds, SUM(c."costUsd")::text AS "capacityCost"
             FROM "CapacityRollup" c JOIN "Deployment" d ON d.id = c."deploymentId"
             WHERE d."workspaceId" = $2 AND c.minute >= $3::timestamp(3) AND c.minute < $4::timestamp(3)${capacityFilter}
             GROUP BY 1 ORDER BY 1`,
            ...params,
          ),
    ]);
    const byStart = new Map<number, Sums>();
    for (const row of [...tokens, ...capacity]) {
      const t = row.start.getTime();
      byStart.set(t, { ...(byStart.get(t) ?? ({} as Sums)), ...row });
    }
    const buckets = [...byStart.keys()].sort((a, b) => a - b).map((t) => bucket(byStart.get(t)!));
    const total = buckets.reduce<UsageBucket>(
      (acc, b) =>
        sumInto(acc, b, [
          'requests',
          'errors',
          'promptTokens',
          'completionTokens',
          'images',
          'audioSeconds',
          'replicaSeconds',
          'tokenCostUsd',
          'capacityCostUsd',
        ]),
      {
        start: input.from,
        requests: 0,
        errors: 0,
        promptTokens: 0,
        completionTokens: 0,
        images: 0,
        audioSeconds: 0,
        avgLatencyMs: null,
        avgTtftMs: null,
        replicaSeconds: 0,
        tokenCostUsd: 0,
        capacityCostUsd: 0,
        costUsd: 0,
      },
    );
    const latency = tokens.reduce((s, r) => s + r.latency, 0);
    const ttft = tokens.reduce((s, r) => s + r.ttft, 0);
    const ttftCount = tokens.reduce((s, r) => s + r.ttftCount, 0);
    total.avgLatencyMs = total.requests ? latency / total.requests : null;
    total.avgTtftMs = ttftCount ? ttft / ttftCount : null;
    total.tokenCostUsd = usd(total.tokenCostUsd);
    total.capacityCostUsd = usd(total.capacityCostUsd);
    total.costUsd = usd(total.tokenCostUsd + total.capacityCostUsd);
    return { from: input.from, to: input.to, granularity: input.granularity, buckets, total };
  }
}

function bucket(s: Sums): UsageBucket {
  const tokenCostUsd = Number(s.tokenCost ?? 0);
  const capacityCostUsd = Number(s.capacityCost ?? 0);
  const requests = s.requests ?? 0;
  return {
    start: s.start,
    requests,
    errors: s.errors ?? 0,
    promptTokens: Number(s.prompt ?? 0),
    completionTokens: Number(s.completion ?? 0),
    images: s.images ?? 0,
    audioSeconds: s.audioSeconds ?? 0,
    avgLatencyMs: requests ? s.latency / requests : null,
    avgTtftMs: s.ttftCount ? s.ttft / s.ttftCount : null,
    replicaSeconds: s.seconds ?? 0,
    tokenCostUsd: usd(tokenCostUsd),
    capacityCostUsd: usd(capacityCostUsd),
    costUsd: usd(tokenCostUsd + capacityCostUsd),
  };
}
