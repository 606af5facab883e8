import { Module, UseGuards } from '@nestjs/common';
import { Args, ID, Mutation, Query, Resolver } from '@nestjs/graphql';
import { planMaxConcurrency, planMaxReplicas, PlanName } from '../domain/plans';
import { CreatedManagementToken, ManagementToken, Workspace } from '../graphql/models';
import { AuthContext, CurrentAuth, ManagementAuthGuard } from './auth';
import { WorkspacesService } from './workspaces.service';

@Resolver(() => Workspace)
@UseGuards(ManagementAuthGuard)
export class WorkspacesResolver {
  constructor(private readonly workspaces: WorkspacesService) {}

  @Query(() => Workspace, { description: 'The workspace of the management token.' })
  workspace(@CurrentAuth() auth: AuthContext): Workspace {
    const ws = auth.workspace;
    const plan = ws.plan as PlanName;
    return {
      id: ws.id,
      name: ws.name,
      plan: ws.plan,
      maxReplicas: Math.min(planMaxReplicas(plan, ws.maxReplicas), 2 ** 31 - 1),
      maxConcurrency: Math.min(planMaxConcurrency(plan, ws.maxConcurrency), 2 ** 31 - 1),
    };
  }

  @Mutation(() => CreatedManagementToken)
  async createManagementToken(@CurrentAuth() auth: AuthContext, @Args('name') name: string): Promise<CreatedManagementToken> {
    const { row, token } = await this.workspaces.createToken(auth.workspace.id, name.slice(0, 100) || 'token');
    return { id: row.id, prefix: row.prefix, token };
  }

  @Query(() => [ManagementToken], { description: 'Tokens by prefix; the tokens themselves are never shown again.' })
  managementTokens(@CurrentAuth() auth: AuthContext) {
    return this.workspaces.listTokens(auth.workspace.id);
  }

  @Mutation(() => ManagementToken)
  revokeManagementToken(@CurrentAuth() auth: AuthContext, @Args('id', { type: () => ID }) id: string) {
    return this.workspaces.revokeToken(auth.workspace.id, id, auth.tokenId);
  }
}

@Module({ providers: [WorkspacesService, WorkspacesResolver], exports: [WorkspacesService] })
export class WorkspacesModule {}
