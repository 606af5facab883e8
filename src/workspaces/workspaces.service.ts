import { Inject, Injectable } from '@nestjs/common';
import { PRISMA } from '../common/core.module';
import { issueSecret, newId, secretFromPlaintext } from '../common/secrets';
import type { Plan, PrismaClient, Workspace as WorkspaceRow } from '../database/prisma';
import { DomainError, ErrorCode, notFound } from '../domain/errors';
import { planMaxConcurrency, planMaxReplicas, PlanName } from '../domain/plans';
import { audit } from '../audit/audit';
import { CHANNEL_KEYS, notify } from '../database/notify';
import type { CreatedManagementToken, Workspace, WorkspaceSettingsInput } from './workspaces.types';

/** Enterprise's custom caps, and a spend cap, within sane bounds. */
const CAP_MAX = 100_000;
const SPEND_CAP_MAX_USD = 1e9;

export const DEFAULT_WORKSPACE_ID = 'ws_default';

@Injectable()
export class WorkspacesService {
  constructor(@Inject(PRISMA) private readonly prisma: PrismaClient) {}

  /** Creates a workspace and its first management token; the plaintext is returned once. */
  async create(name: string, plan: Plan, id = newId('ws')) {
    const secret = issueSecret('mt');
    const workspace = await this.prisma.workspace.create({
      data: { id, name, plan, tokens: { create: { id: newId('mtk'), name: 'initial', prefix: secret.prefix, hash: secret.hash } } },
    });
    return { workspace, token: secret.plaintext };
  }

  /** The workspace with its plan's effective limits (unlimited shown as the largest GraphQL Int). */
  view(ws: WorkspaceRow): Workspace {
    const plan = ws.plan as PlanName;
    return {
      id: ws.id,
      name: ws.name,
      plan: ws.plan,
      maxReplicas: Math.min(planMaxReplicas(plan, ws.maxReplicas), 2 ** 31 - 1),
      maxConcurrency: Math.min(planMaxConcurrency(plan, ws.maxConcurrency), 2 ** 31 - 1),
      monthlySpendCapUsd: ws.monthlySpendCapUsd === null ? null : Number(ws.monthlySpendCapUsd),
    };
  }

  /**
   * The settings a workspace's admins change: the monthly spend cap (null clears it) and, on Enterprise, the custom
   * replica and concurrency caps (null returns to the plan's). Each change is an audit event; every gateway sees it
   * within a second (the keys it caches carry the cap and the budget).
   */
  async updateSettings(ws: WorkspaceRow, input: WorkspaceSettingsInput, actorId: string | null): Promise<Workspace> {
    const data: { monthlySpendCapUsd?: number | null; maxReplicas?: number | null; maxConcurrency?: number | null } = {};
    const cap = input.monthlySpendCapUsd;
    if (cap !== undefined) {
      if (cap !== null && !(Number.isFinite(cap) && cap > 0 && cap <= SPEND_CAP_MAX_USD)) {
        throw new DomainError(
          ErrorCode.BAD_USER_INPUT,
          `monthlySpendCapUsd: must be above 0 and at most ${SPEND_CAP_MAX_USD} (null clears the cap)`,
          {
            field: 'monthlySpendCapUsd',
          },
        );
      }
      data.monthlySpendCapUsd = cap;
    }
    for (const field of ['maxReplicas', 'maxConcurrency'] as const) {
      const v = input[field];
      if (v === undefined) continue;
      if (ws.plan !== 'ENTERPRISE') {
        throw new DomainError(ErrorCode.PLAN_LIMIT, `${field}: custom caps are an Enterprise setting; the ${ws.plan} plan's caps apply`, {
          field,
          plan: ws.plan,
        });
      }
      if (v !== null && !(Number.isInteger(v) && v >= 1 && v <= CAP_MAX)) {
        throw new DomainError(ErrorCode.BAD_USER_INPUT, `${field}: must be an integer from 1 to ${CAP_MAX} (null for the plan's)`, {
          field,
        });
      }
      data[field] = v;
    }
    const before = this.view(ws);
    // The change and its audit event in one transaction: no change goes unrecorded.
    const after = await this.prisma.$transaction(async (tx) => {
      const now = this.view(await tx.workspace.update({ where: { id: ws.id }, data }));
      const changed = (Object.keys(data) as Array<keyof typeof data>).filter((k) => before[k] !== now[k]);
      if (changed.length) {
        await audit(tx, {
          workspaceId: ws.id,
          actorId,
          kind: 'workspace.settings',
          message: changed.map((k) => `${k} ${before[k] ?? 'none'} -> ${now[k] ?? 'none'}`).join(', '),
          data: Object.fromEntries(changed.map((k) => [k, { from: before[k], to: now[k] }])),
        });
        await notify(tx, CHANNEL_KEYS, ws.id);
      }
      return now;
    });
    return after;
  }

  /** The audit trail, newest first. */
  auditEvents(workspaceId: string, limit: number) {
    return this.prisma.auditEvent.findMany({ where: { workspaceId }, orderBy: { id: 'desc' }, take: Math.max(1, Math.min(limit, 1000)) });
  }

  /** Revokes a token of this workspace; the token in use cannot revoke itself (no lock-out by mistake). */
  async revokeToken(workspaceId: string, id: string, currentTokenId: string) {
    if (id === currentTokenId) {
      throw new DomainError(ErrorCode.CONFLICT, 'a management token cannot revoke itself; use another token of this workspace', { id });
    }
    const token = await this.prisma.managementToken.findFirst({ where: { id, workspaceId } });
    if (!token) throw notFound('management token', id);
    return token.revokedAt ? token : this.prisma.managementToken.update({ where: { id }, data: { revokedAt: new Date() } });
  }

  listTokens(workspaceId: string) {
    return this.prisma.managementToken.findMany({ where: { workspaceId }, orderBy: { createdAt: 'asc' } });
  }

  /** A new management token; the plaintext is returned once. */
  async createToken(workspaceId: string, name: string): Promise<CreatedManagementToken> {
    const secret = issueSecret('mt');
    const row = await this.prisma.managementToken.create({
      data: { id: newId('mtk'), workspaceId, name: name.slice(0, 100) || 'token', prefix: secret.prefix, hash: secret.hash },
    });
    return { id: row.id, prefix: row.prefix, token: secret.plaintext };
  }
}

/**
 * The default workspace of a local stack (Team plan). With a given token, makes
 * sure that token belongs to it; otherwise creates a new token. Returns the
 * plaintext only when it was created or given.
 */
export async function ensureDefaultWorkspace(prisma: PrismaClient, givenToken?: string): Promise<{ token: string }> {
  await prisma.workspace.upsert({
    where: { id: DEFAULT_WORKSPACE_ID },
    create: { id: DEFAULT_WORKSPACE_ID, name: 'default', plan: 'TEAM' },
    update: {},
  });
  const secret = givenToken ? secretFromPlaintext(givenToken) : issueSecret('mt');
  await prisma.managementToken.upsert({
    where: { hash: secret.hash },
    create: {
      id: newId('mtk'),
      workspaceId: DEFAULT_WORKSPACE_ID,
      name: givenToken ? 'bootstrap' : 'generated',
      prefix: secret.prefix,
      hash: secret.hash,
    },
    update: { revokedAt: null },
  });
  return { token: secret.plaintext };
}
