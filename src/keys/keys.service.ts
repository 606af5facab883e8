import { Inject, Injectable } from '@nestjs/common';
import { z } from 'zod';
import { PRISMA } from '../common/core.module';
import { issueSecret, newId } from '../common/secrets';
import type { PrismaClient, Workspace } from '../database/prisma';
import { DomainError, ErrorCode, notFound } from '../domain/errors';
import { PLANS, PlanName } from '../domain/plans';
import { CHANNEL_KEYS, notify } from '../database/notify';
import { audit } from '../audit/audit';
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

/** The longest grace a rotated key keeps working: a week. */
export const MAX_GRACE_SECONDS = 7 * 24 * 3600;

@Injectable()
export class KeysService {
  constructor(@Inject(PRISMA) private readonly prisma: PrismaClient) {}

  /** A per-key rate within the plan's bounds (null: the plan default), or PLAN_LIMIT naming the bound. */
  private checkRate(ws: Workspace, rate: number | null | undefined) {
    const plan = PLANS[ws.plan as PlanName];
    if (rate != null && plan.keyRateMax != null && rate > plan.keyRateMax) {
      throw new DomainError(ErrorCode.PLAN_LIMIT, `rateLimitPerMinute ${rate} exceeds the ${ws.plan} plan's ${plan.keyRateMax}`, {
        field: 'rateLimitPerMinute',
        limit: plan.keyRateMax,
      });
    }
  }

  async create(ws: Workspace, raw: CreateApiKeyInput, actorId: string | null = null) {
    const input = createKeySchema.parse(raw);
    const plan = PLANS[ws.plan as PlanName];
    if (plan.keyRateDefault === null && plan.keyRateMax === null && !plan.canDeploy) {
      throw new DomainError(ErrorCode.PLAN_LIMIT, `the ${ws.plan} plan has no API keys; upgrade to Pro or higher`);
    }
    this.checkRate(ws, input.rateLimitPerMinute);
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
    const id = newId('key');
    const [apiKey] = await this.prisma.$transaction([
      this.prisma.apiKey.create({
        data: {
          id,
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
      }),
      audit(this.prisma, {
        workspaceId: ws.id,
        actorId,
        kind: 'key.created',
        message: `${input.scope} key ${input.name} (${secret.prefix}) created`,
        data: { keyId: id, scope: input.scope, pipelineId, deploymentId, rateLimitPerMinute: input.rateLimitPerMinute ?? null },
      }),
    ]);
    return { apiKey, key: secret.plaintext };
  }

  /**
   * A new key for the same scope, name and limits, shown once; the old one keeps working for `graceSeconds`, then gets
   * 401 saying it was rotated. Every gateway process sees both at once (NOTIFY).
   */
  async rotate(ws: Workspace, id: string, graceSeconds: number, actorId: string | null) {
    if (!Number.isInteger(graceSeconds) || graceSeconds < 0 || graceSeconds > MAX_GRACE_SECONDS) {
      throw new DomainError(ErrorCode.BAD_USER_INPUT, `graceSeconds: must be an integer from 0 to ${MAX_GRACE_SECONDS} (a week)`, {
        field: 'graceSeconds',
      });
    }
    const old = await this.prisma.apiKey.findFirst({ where: { id, workspaceId: ws.id } });
    if (!old) throw notFound('API key', id);
    if (old.revokedAt) throw new DomainError(ErrorCode.CONFLICT, `API key ${old.prefix} is revoked: create a new key instead`);
    if (old.rotatedAt) {
      throw new DomainError(ErrorCode.CONFLICT, `API key ${old.prefix} was already rotated; rotate the key that replaced it`, {
        replacedById: old.replacedById,
      });
    }
    if (!old.issuedAt)
      throw new DomainError(ErrorCode.CONFLICT, `API key ${old.prefix} is not issued yet (its deployment is still deploying)`);
    const now = new Date();
    const graceEnd = new Date(now.getTime() + graceSeconds * 1000);
    const expiresAt = old.expiresAt && old.expiresAt < graceEnd ? old.expiresAt : graceEnd;
    const secret = issueSecret('sk');
    const newKeyId = newId('key');
    const [apiKey, previous] = await this.prisma.$transaction([
      this.prisma.apiKey.create({
        data: {
          id: newKeyId,
          workspaceId: ws.id,
          scope: old.scope,
          pipelineId: old.pipelineId,
          deploymentId: old.deploymentId,
          name: old.name,
          prefix: secret.prefix,
          hash: secret.hash,
          rateLimitPerMinute: old.rateLimitPerMinute,
          expiresAt: old.expiresAt,
          issuedAt: now,
        },
      }),
      this.prisma.apiKey.update({ where: { id }, data: { rotatedAt: now, replacedById: newKeyId, expiresAt } }),
      audit(this.prisma, {
        workspaceId: ws.id,
        actorId,
        kind: 'key.rotated',
        message: `key ${old.name} (${old.prefix}) rotated to ${secret.prefix}; the old key works until ${expiresAt.toISOString()}`,
        data: { keyId: id, replacedById: newKeyId, graceSeconds },
      }),
      notify(this.prisma, CHANNEL_KEYS, old.hash),
    ]);
    return { apiKey, key: secret.plaintext, previous };
  }

  /** A key's own rate within the plan's bounds; null returns it to the plan default. */
  async setRateLimit(ws: Workspace, id: string, rateLimitPerMinute: number | null, actorId: string | null) {
    if (rateLimitPerMinute !== null && (!Number.isInteger(rateLimitPerMinute) || rateLimitPerMinute < 1)) {
      throw new DomainError(ErrorCode.BAD_USER_INPUT, 'rateLimitPerMinute: must be at least 1 (or null for the plan default)', {
        field: 'rateLimitPerMinute',
      });
    }
    this.checkRate(ws, rateLimitPerMinute);
    const key = await this.prisma.apiKey.findFirst({ where: { id, workspaceId: ws.id } });
    if (!key) throw notFound('API key', id);
    const [updated] = await this.prisma.$transaction([
      this.prisma.apiKey.update({ where: { id }, data: { rateLimitPerMinute } }),
      audit(this.prisma, {
        workspaceId: ws.id,
        actorId,
        kind: 'key.rate_limit',
        message: `key ${key.name} (${key.prefix}) rate ${key.rateLimitPerMinute ?? 'plan default'} -> ${rateLimitPerMinute ?? 'plan default'} per minute`,
        data: { keyId: id, from: key.rateLimitPerMinute, to: rateLimitPerMinute },
      }),
      notify(this.prisma, CHANNEL_KEYS, key.hash),
    ]);
    return updated;
  }

  list(workspaceId: string) {
    return this.prisma.apiKey.findMany({ where: { workspaceId }, orderBy: { createdAt: 'desc' } });
  }

  async revoke(workspaceId: string, id: string, actorId: string | null = null) {
    const key = await this.prisma.apiKey.findFirst({ where: { id, workspaceId } });
    if (!key) throw notFound('API key', id);
    // Every gateway process drops the key from its cache on the notification, sent with the commit (never a revoked row
    // without it, even if this process dies right after). Revoking again sends it again, for a gateway that missed it.
    if (key.revokedAt) {
      await notify(this.prisma, CHANNEL_KEYS, key.hash);
      return key;
    }
    const [updated] = await this.prisma.$transaction([
      this.prisma.apiKey.update({ where: { id }, data: { revokedAt: new Date() } }),
      audit(this.prisma, {
        workspaceId,
        actorId,
        kind: 'key.revoked',
        message: `key ${key.name} (${key.prefix}) revoked`,
        data: { keyId: id },
      }),
      notify(this.prisma, CHANNEL_KEYS, key.hash),
    ]);
    return updated;
  }
}
