import { UseGuards } from '@nestjs/common';
import { Args, ID, Query, Resolver } from '@nestjs/graphql';
import { AuthContext, CurrentAuth, ManagementAuthGuard } from '../workspaces/auth.guard';
import { BundleService } from './bundle.service';
import { BundleFile } from './bundle.types';

@Resolver(() => BundleFile)
@UseGuards(ManagementAuthGuard)
export class BundleResolver {
  constructor(private readonly svc: BundleService) {}

  @Query(() => [BundleFile], {
    description:
      "A container build context of the pipeline's variant (the selected one when variantId is omitted) for your own GPUs: Dockerfile, serve.sh, runtime.json, artifacts.json, docker-compose.yaml and k8s/ manifests. Run it, then deploy with target CUSTOM on its URL.",
  })
  pipelineBundle(
    @CurrentAuth() auth: AuthContext,
    @Args('pipelineId', { type: () => ID }) pipelineId: string,
    @Args('variantId', { type: () => ID, nullable: true }) variantId?: string | null,
  ) {
    return this.svc.files(auth.workspace.id, pipelineId, variantId);
  }
}
