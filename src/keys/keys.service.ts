import { Inject, Injectable } from '@nestjs/common';
import { z } from 'zod';
import { PRISMA } from '../common/core.module';
import { issueSecret, newId } from '../common/secrets';
import type { PrismaClient, Workspace } from '../database/prisma';
import { DomainError, ErrorCode, notFound } from '../domain/errors';
import { PLANS, PlanName } from '../domain/plans';
import { CHANNEL_KEYS, notify } from '../database/notify';
import type { CreateApiKeyInput } from './keys.types';

const createKeySchema = z
  .object({
    name: z.string().min(1, 'must not be empty').max(100, 'must be at most 100 characters'),
    scope: z.enum(['WORKSPACE', 'PIPELINE', 'DEPLOYMENT']),
    pipelineId: z.string().min(1).optional().nullable(),
    deploymentId: z.string().min(1).optional().nullable(),
    expiresAt: z.date().optional().nullable(),
    rateLimitPerMinute: z.number().int().min(1, 'must be at least 1').optional().nullable(),
  })
  .superRefine((v, ctx) => {
    if (v.scope === 'PIPELINE' && !v.pipelineId)
      ctx.addIssue({ code: 'custom', path: ['pipelineId'], message: 'is required for a PIPELINE key' });
    if (v.scope === 'DEPLOYMENT' && !v.deploymentId)
      ctx.addIssue({ code: 'custom', path: ['deploymentId'], message: 'is required for a DEPLOYMENT key' });
    if (v.expiresAt && v.expiresAt.getTime() <= Date.now())
      ctx.addIssue({ code: 'custom', path: ['expiresAt'], message: 'must be in the future' });
  });

@Injectable()
export class KeysService {
  constructor(@Inject(PRISMA) private readonly prisma: PrismaClient) {}

  async create(ws: Workspace, raw: CreateApiKeyInput) {
    const input = createKeySchema.parse(raw);
    const plan = PLANS[ws.plan as PlanName];
    if (plan.keyRateDefault === null && plan.keyRateMax === null && !plan.canDeploy) {
      throw new DomainError(ErrorCode.PLAN_LIMIT, `the ${ws.plan} plan has no API keys; upgrade to Pro or higher`);
    }
    if (input.rateLimitPerMinute != null && plan.keyRateMax != null && input.rateLimitPerMinute > plan.keyRateMax) {
      throw new DomainError(
        ErrorCode.PLAN_LIMIT,
        `rateLimitPerMinute ${input.rateLimitPerMinute} exceeds the ${ws.plan} plan's ${plan.keyRateMax}`,
        { field: 'rateLimitPerMinute' },
      );
    }
    let pipelineId = input.scope === 'WORKSPACE' ? null : (input.pipelineId ?? null);
    let deploymentId: string | null = null;
    if (input.scope === 'DEPLOYMENT') {
      const d = await this.prisma.deployment.findFirst({ where: { id: input.deploymentId!, workspaceId: ws.id } });
      if (!d) throw notFound('deployment', input.deploymentId!);
      deploymentId = d.id;
      pipelineId = d.pipelineId;
    } else if (pipelineId) {
      const p = await this.prisma.pipeline.findFirst({ where: { id: pipelineId, workspaceId: ws.id } });
      if (!p) throw notFound('pipeline', pipelineId);
    }
    const secret = issueSecret('sk');
    const apiKey = await this.prisma.apiKey.create({
      data: {
        id: newId('key'),
        workspaceId: ws.id,
        scope: input.scope,
        pipelineId,
        deploymentId,
        name: input.name,
        prefix: secret.prefix,
        hash: secret.hash,
        rateLimitPerMinute: input.rateLimitPerMinute ?? null,
        expiresAt: input.expiresAt ?? null,
        issuedAt: new Date(),
      },
    });
    return { apiKey, key: secret.plaintext };
  }

  list(workspaceId: string) {
    return this.prisma.apiKey.findMany({ where: { workspaceId }, orderBy: { createdAt: 'desc' } });
  }

  async revoke(workspaceId: string, id: string) {
    const key = await this.prisma.apiKey.findFirst({ where: { id, workspaceId } });
    if (!key) throw notFound('API key', id);
    const updated = key.revokedAt ? key : await this.prisma.apiKey.update({ where: { id }, data: { revokedAt: new Date() } });
    // Every gateway process drops the key from its cache on this notification.
    await notify(this.prisma, CHANNEL_KEYS, key.hash);
    return updated;
  }
}
