import { Inject, Injectable } from '@nestjs/common';
import { PRISMA } from '../common/core.module';
import { issueSecret, newId, secretFromPlaintext } from '../common/secrets';
import type { Plan, PrismaClient, Workspace as WorkspaceRow } from '../database/prisma';
import { DomainError, ErrorCode, notFound } from '../domain/errors';
import { planMaxConcurrency, planMaxReplicas, PlanName } from '../domain/plans';
import type { CreatedManagementToken, Workspace } from './workspaces.types';

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
    };
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
