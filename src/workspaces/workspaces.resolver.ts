import { UseGuards } from '@nestjs/common';
import { Args, ID, Int, Mutation, Query, Resolver } from '@nestjs/graphql';
import { AuthContext, CurrentAuth, ManagementAuthGuard } from './auth.guard';
import { WorkspacesService } from './workspaces.service';
import { AuditEvent, CreatedManagementToken, ManagementToken, Workspace, WorkspaceSettingsInput } from './workspaces.types';

@Resolver(() => Workspace)
@UseGuards(ManagementAuthGuard)
export class WorkspacesResolver {
  constructor(private readonly workspaces: WorkspacesService) {}

  @Query(() => Workspace, { description: 'The workspace of the management token.' })
  workspace(@CurrentAuth() auth: AuthContext): Workspace {
    return this.workspaces.view(auth.workspace);
  }

  @Mutation(() => Workspace, { description: 'The spend cap, and on Enterprise the custom caps; each change is an audit event.' })
  updateWorkspaceSettings(@CurrentAuth() auth: AuthContext, @Args('input') input: WorkspaceSettingsInput): Promise<Workspace> {
    return this.workspaces.updateSettings(auth.workspace, input, auth.tokenId);
  }

  @Query(() => [AuditEvent], { description: "Changes to the workspace's settings and keys, newest first." })
  auditEvents(@CurrentAuth() auth: AuthContext, @Args('limit', { type: () => Int, defaultValue: 100 }) limit: number) {
    return this.workspaces.auditEvents(auth.workspace.id, limit);
  }

  @Mutation(() => CreatedManagementToken)
  createManagementToken(@CurrentAuth() auth: AuthContext, @Args('name') name: string): Promise<CreatedManagementToken> {
    return this.workspaces.createToken(auth.workspace.id, name);
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
