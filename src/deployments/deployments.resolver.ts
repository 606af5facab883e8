import { UseGuards } from '@nestjs/common';
import { Args, ID, Mutation, Parent, Query, ResolveField, Resolver } from '@nestjs/graphql';
import { Pipeline, Variant } from '../pipelines/pipelines.types';
import { AuthContext, CurrentAuth, ManagementAuthGuard } from '../workspaces/auth.guard';
import { DeploymentsService } from './deployments.service';
import { Deployment, DeploymentEvent, DeployPayload, DeployPipelineInput, Operation, Replica, Revision } from './deployments.types';

@Resolver(() => Deployment)
@UseGuards(ManagementAuthGuard)
export class DeploymentsResolver {
  constructor(private readonly svc: DeploymentsService) {}

  @Mutation(() => DeployPayload, { description: 'Starts deploy:<deploymentId>; returns at once with a PENDING deployment and its key.' })
  deployPipeline(@CurrentAuth() auth: AuthContext, @Args('input') input: DeployPipelineInput) {
    return this.svc.deploy(auth.workspace, input);
  }

  @Mutation(() => Operation, {
    description:
      'Starts op:<deploymentId>:<opId>: pause the scaler, stop routing (503 deployment_stopped), drain, stop every replica; STOPPED bills nothing.',
  })
  stopDeployment(@CurrentAuth() auth: AuthContext, @Args('id', { type: () => ID }) id: string) {
    return this.svc.lifecycle(auth.workspace, id, 'STOP');
  }

  @Mutation(() => Operation, {
    description:
      'Starts op:<deploymentId>:<opId>: provision max(1, minReplicas) replicas from cached weights, then ACTIVE and the scaler resumes.',
  })
  startDeployment(@CurrentAuth() auth: AuthContext, @Args('id', { type: () => ID }) id: string) {
    return this.svc.lifecycle(auth.workspace, id, 'START');
  }

  @Mutation(() => Operation, {
    description:
      "Starts op:<deploymentId>:<opId>: stop (unless STOPPED), revoke the deployment's keys, end its scaler, DELETED (rows stay).",
  })
  deleteDeployment(@CurrentAuth() auth: AuthContext, @Args('id', { type: () => ID }) id: string) {
    return this.svc.lifecycle(auth.workspace, id, 'DELETE');
  }

  @Mutation(() => Operation, {
    description:
      'Starts op:<deploymentId>:<opId>: blue/green onto another GPU (as many new replicas as serve now, at least one), switch the routes at once, drain the old. `warning` says when the variant was optimized for another GPU.',
  })
  changeGpu(
    @CurrentAuth() auth: AuthContext,
    @Args('deploymentId', { type: () => ID }) deploymentId: string,
    @Args('gpu', { description: 'GPU type id on the target; "sim" or "sim-large" on LOCAL.' }) gpu: string,
  ) {
    return this.svc.changeGpu(auth.workspace, deploymentId, gpu);
  }

  @Mutation(() => Operation, {
    description:
      'Starts op:<deploymentId>:<opId>: the same blue/green swap onto another variant of the pipeline (see Deployment.revisions), on the GPU it was last served on. Cached weights make it a warm start.',
  })
  rollbackDeployment(
    @CurrentAuth() auth: AuthContext,
    @Args('deploymentId', { type: () => ID }) deploymentId: string,
    @Args('variantId', { type: () => ID }) variantId: string,
  ) {
    return this.svc.rollback(auth.workspace, deploymentId, variantId);
  }

  @Query(() => Deployment)
  deployment(@CurrentAuth() auth: AuthContext, @Args('id', { type: () => ID }) id: string) {
    return this.svc.get(auth.workspace.id, id);
  }

  @Query(() => [Deployment])
  deployments(@CurrentAuth() auth: AuthContext) {
    return this.svc.list(auth.workspace.id);
  }

  @ResolveField(() => [Replica], { description: 'Replicas not yet stopped, oldest first.' })
  replicas(@Parent() d: Deployment, @Args('includeStopped', { defaultValue: false }) includeStopped: boolean) {
    return this.svc.replicas(d.id, includeStopped);
  }

  @ResolveField(() => [DeploymentEvent], { description: 'Audit trail, oldest first.' })
  events(@Parent() d: Deployment) {
    return this.svc.events(d.id);
  }

  @ResolveField(() => [Revision], { description: 'What it serves (SERVING) and served before, newest first: what to roll back to.' })
  revisions(@Parent() d: Deployment) {
    return this.svc.revisions(d.id);
  }

  @ResolveField(() => [Operation])
  operations(@Parent() d: Deployment) {
    return this.svc.operations(d.id);
  }

  @ResolveField(() => Pipeline)
  pipeline(@Parent() d: Deployment) {
    return this.svc.pipeline(d.pipelineId);
  }

  @ResolveField(() => Variant)
  variant(@Parent() d: Deployment) {
    return this.svc.variant(d.variantId);
  }
}

@Resolver(() => Revision)
@UseGuards(ManagementAuthGuard)
export class RevisionsResolver {
  constructor(private readonly svc: DeploymentsService) {}

  @ResolveField(() => Variant)
  variant(@Parent() r: Revision) {
    return this.svc.variant(r.variantId);
  }
}
