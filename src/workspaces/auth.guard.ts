import { CanActivate, createParamDecorator, ExecutionContext, Inject, Injectable } from '@nestjs/common';
import { GqlExecutionContext } from '@nestjs/graphql';
import { PRISMA } from '../common/core.module';
import { bearer, hashSecret } from '../common/secrets';
import type { PrismaClient, Workspace } from '../database/prisma';
import { DomainError, ErrorCode } from '../domain/errors';

export interface AuthContext {
  workspace: Workspace;
  tokenId: string;
}

interface GqlCtx {
  req: { headers: Record<string, string | string[] | undefined> };
  auth?: AuthContext;
}

/** Management API auth: `Authorization: Bearer mt_...`, looked up by SHA-256. */
@Injectable()
export class ManagementAuthGuard implements CanActivate {
  constructor(@Inject(PRISMA) private readonly prisma: PrismaClient) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const ctx = GqlExecutionContext.create(context).getContext<GqlCtx>();
    if (ctx.auth) return true;
    const secret = bearer(ctx.req.headers.authorization);
    if (!secret) {
      throw new DomainError(ErrorCode.UNAUTHENTICATED, 'missing management token: send Authorization: Bearer <token>');
    }
    const token = await this.prisma.managementToken.findUnique({
      where: { hash: hashSecret(secret) },
      include: { workspace: true },
    });
    if (!token || token.revokedAt) throw new DomainError(ErrorCode.UNAUTHENTICATED, 'invalid or revoked management token');
    ctx.auth = { workspace: token.workspace, tokenId: token.id };
    return true;
  }
}

/** The authenticated workspace of this GraphQL request. */
export const CurrentAuth = createParamDecorator((_: unknown, context: ExecutionContext): AuthContext => {
  const ctx = GqlExecutionContext.create(context).getContext<GqlCtx>();
  if (!ctx.auth) throw new DomainError(ErrorCode.UNAUTHENTICATED, 'not authenticated');
  return ctx.auth;
});
