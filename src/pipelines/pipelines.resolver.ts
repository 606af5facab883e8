import { UseGuards } from '@nestjs/common';
import { Args, ID, Mutation, Parent, Query, ResolveField, Resolver } from '@nestjs/graphql';
import { AuthContext, CurrentAuth, ManagementAuthGuard } from '../workspaces/auth.guard';
import { PipelinesService } from './pipelines.service';
import { CreatePipelineInput, CreateVariantInput, Pipeline, Variant } from './pipelines.types';

@Resolver(() => Pipeline)
@UseGuards(ManagementAuthGuard)
export class PipelinesResolver {
  constructor(private readonly svc: PipelinesService) {}

  @Mutation(() => Pipeline)
  createPipeline(@CurrentAuth() auth: AuthContext, @Args('input') input: CreatePipelineInput) {
    return this.svc.create(auth.workspace.id, input);
  }

  @Mutation(() => Variant, { description: 'Adds a variant by hand: deploy it, or move a deployment onto it with rollbackDeployment.' })
  createVariant(
    @CurrentAuth() auth: AuthContext,
    @Args('pipelineId', { type: () => ID }) pipelineId: string,
    @Args('input') input: CreateVariantInput,
  ) {
    return this.svc.createVariant(auth.workspace.id, pipelineId, input);
  }

  @Query(() => Pipeline)
  pipeline(@CurrentAuth() auth: AuthContext, @Args('id', { type: () => ID }) id: string) {
    return this.svc.get(auth.workspace.id, id);
  }

  @Query(() => [Pipeline])
  pipelines(@CurrentAuth() auth: AuthContext) {
    return this.svc.list(auth.workspace.id);
  }

  @ResolveField(() => [Variant])
  variants(@Parent() p: Pipeline) {
    return this.svc.variants(p.id);
  }
}
