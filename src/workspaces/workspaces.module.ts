import { Module, UseGuards } from '@nestjs/common';
import { Args, Mutation, Query, Resolver } from '@nestjs/graphql';
import { planMaxConcurrency, planMaxReplicas, PlanName } from '../domain/plans';
import { CreatedManagementToken, Workspace } from '../graphql/models';
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
}

@Module({ providers: [WorkspacesService, WorkspacesResolver], exports: [WorkspacesService] })
export class WorkspacesModule {}
