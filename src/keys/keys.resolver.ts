import { UseGuards } from '@nestjs/common';
import { Args, ID, Mutation, Query, Resolver } from '@nestjs/graphql';
import { AuthContext, CurrentAuth, ManagementAuthGuard } from '../workspaces/auth.guard';
import { KeysService } from './keys.service';
import { ApiKey, CreateApiKeyInput, CreatedApiKey } from './keys.types';

@Resolver(() => ApiKey)
@UseGuards(ManagementAuthGuard)
export class KeysResolver {
  constructor(private readonly svc: KeysService) {}

  @Mutation(() => CreatedApiKey)
  createApiKey(@CurrentAuth() auth: AuthContext, @Args('input') input: CreateApiKeyInput) {
    return this.svc.create(auth.workspace, input);
  }

  @Query(() => [ApiKey], { description: 'Keys by prefix; the keys themselves are never shown again.' })
  apiKeys(@CurrentAuth() auth: AuthContext) {
    return this.svc.list(auth.workspace.id);
  }

  @Mutation(() => ApiKey, { description: 'Takes effect on every gateway process within a second.' })
  revokeApiKey(@CurrentAuth() auth: AuthContext, @Args('id', { type: () => ID }) id: string) {
    return this.svc.revoke(auth.workspace.id, id);
  }
}
