import { UseGuards } from '@nestjs/common';
import { Args, ID, Int, Mutation, Query, Resolver } from '@nestjs/graphql';
import { AuthContext, CurrentAuth, ManagementAuthGuard } from '../workspaces/auth.guard';
import { KeysService } from './keys.service';
import { ApiKey, CreateApiKeyInput, CreatedApiKey, RotatedApiKey } from './keys.types';

@Resolver(() => ApiKey)
@UseGuards(ManagementAuthGuard)
export class KeysResolver {
  constructor(private readonly svc: KeysService) {}

  @Mutation(() => CreatedApiKey)
  createApiKey(@CurrentAuth() auth: AuthContext, @Args('input') input: CreateApiKeyInput) {
    return this.svc.create(auth.workspace, input, auth.tokenId);
  }

  @Mutation(() => RotatedApiKey, {
    description:
      'A new key in place of this one, shown once; the old key works for graceSeconds more, then gets 401 saying it was rotated.',
  })
  rotateApiKey(
    @CurrentAuth() auth: AuthContext,
    @Args('id', { type: () => ID }) id: string,
    @Args('graceSeconds', { type: () => Int, defaultValue: 3600, description: 'How long the old key keeps working: 0 to 604800 (a week).' })
    graceSeconds: number,
  ) {
    return this.svc.rotate(auth.workspace, id, graceSeconds, auth.tokenId);
  }

  @Mutation(() => ApiKey, { description: "A key's own rate, within the plan's bounds; null returns it to the plan default." })
  setApiKeyRateLimit(
    @CurrentAuth() auth: AuthContext,
    @Args('id', { type: () => ID }) id: string,
    @Args('rateLimitPerMinute', { type: () => Int, nullable: true }) rateLimitPerMinute: number | null,
  ) {
    return this.svc.setRateLimit(auth.workspace, id, rateLimitPerMinute ?? null, auth.tokenId);
  }

  @Query(() => [ApiKey], { description: 'Keys by prefix; the keys themselves are never shown again.' })
  apiKeys(@CurrentAuth() auth: AuthContext) {
    return this.svc.list(auth.workspace.id);
  }

  @Mutation(() => ApiKey, { description: 'Takes effect on every gateway process within a second.' })
  revokeApiKey(@CurrentAuth() auth: AuthContext, @Args('id', { type: () => ID }) id: string) {
    return this.svc.revoke(auth.workspace.id, id, auth.tokenId);
  }
}
